#!/usr/bin/env python3
"""Runs a command and records the peak resident memory of its whole process tree.

    tree_rss.py OUT.json CMD [ARGS...]

The command's stdout and stderr pass through; its exit code is this script's. Every 0.2 s the
resident set sizes (VmRSS) of the command and all its descendants (cargo, rustc, QEMU, ...) are
added up, and so are their proportional set sizes (Pss: a page shared by n processes counts 1/n
in each, so shared libraries count once; the sum of VmRSS counts them in every process);
OUT.json gets {"peak_rss_bytes": ..., "peak_pss_bytes": ..., "wall_seconds": ..., "exit_code": ...,
"at_peak_pss": [...]}, the last being what each process of the tree held when the summed Pss peaked
(name, pid, Pss; largest first), so a peak can be put down to the tool, rustc or QEMU. Linux only
(reads /proc). Part of benchmarks/nanonas-cifar10.sh; run by hand, not by the tests.
"""
import json
import os
import subprocess
import sys
import time


def children_of():
    parent = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            # The name is in parentheses and may hold spaces: the ppid follows the last ')'.
            ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
            parent[int(pid)] = ppid
        except (OSError, ValueError, IndexError):
            pass
    return parent


def field_bytes(path, name):
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_bytes(pid):
    return field_bytes(f"/proc/{pid}/status", "VmRSS:")


def pss_bytes(pid):
    # Proportional set size: a page shared by n processes (rustc's shared library, mapped by
    # every rustc) counts 1/n in each, so the sum over the tree counts it once.
    return field_bytes(f"/proc/{pid}/smaps_rollup", "Pss:")


def tree_rss(root):
    parent = children_of()
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    pss = {p: pss_bytes(p) for p in tree}
    return sum(rss_bytes(p) for p in tree), pss


def name_of(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    out, cmd = sys.argv[1], sys.argv[2:]
    start = time.monotonic()
    proc = subprocess.Popen(cmd)
    peak, peak_pss, at_peak = 0, 0, []
    while proc.poll() is None:
        rss, by_pid = tree_rss(proc.pid)
        pss = sum(by_pid.values())
        peak = max(peak, rss)
        if pss > peak_pss:
            peak_pss = pss
            at_peak = sorted(({"name": name_of(p), "pid": p, "pss_bytes": b} for p, b in by_pid.items()),
                             key=lambda x: -x["pss_bytes"])
        time.sleep(0.2)
    wall = time.monotonic() - start
    with open(out, "w") as f:
        json.dump({"peak_rss_bytes": peak, "peak_pss_bytes": peak_pss, "wall_seconds": wall,
                   "exit_code": proc.returncode, "at_peak_pss": at_peak}, f)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
