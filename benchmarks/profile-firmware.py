#!/usr/bin/env python3
"""Where a bench firmware's instructions and code go, under QEMU: a tool for kernel work.

    python3 benchmarks/profile-firmware.py ELF MACHINE [--depth N] [--top N] [--cold] [--no-lines]

ELF is a bench firmware (`cargo tinynas bench ... --message-format json` gives its path as
`firmware`), MACHINE the QEMU machine of its board (qemu-m4: mps2-an386, qemu-m0-an385 and
qemu-m3-an385: mps2-an385, qemu-m7: mps2-an500, qemu-m55: mps3-an547). The firmware runs once with
QEMU logging every translated block and every execution of one (`-d in_asm,exec,nochain`; a
person_detect run writes about 350 MB to a temporary file, removed at the end); each instruction's
executions are summed and attributed, with the debug info's inlining, to the chain of functions
it was inlined from (`--depth` frames from the outermost: `depthwise_q@729 > depthwise_rows@753`
is `depthwise_rows` inlined at line 729 of `depthwise_q`). `--cold` lists instead the code bytes
never executed, by the same chains: what a model compiles but does not run.

The counts cover the whole run: the harness's start-up, its stack painting and the report too, not
only the inference that `bench` times. Needs qemu-system-arm and LLVM's llvm-objdump and
llvm-symbolizer (Debian: `apt-get install llvm`).
"""

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile


def need(tool, package):
    if shutil.which(tool) is None:
        sys.exit(f"{tool} is missing: install {package}")


def short(name):
    """The function's own name without its hash and path: `depthwise_rows`."""
    parts = name.split("::")
    if parts[-1].startswith("h") and len(parts[-1]) == 17:
        parts = parts[:-1]
    return parts[-1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("elf")
    ap.add_argument("machine")
    ap.add_argument("--depth", type=int, default=2, help="frames of each chain, from the outermost")
    ap.add_argument("--top", type=int, default=30, help="chains listed")
    ap.add_argument("--cold", action="store_true", help="list code never executed instead")
    ap.add_argument("--no-lines", action="store_true",
                    help="chains of function names only (sums a function's call sites)")
    a = ap.parse_args()
    for tool in ["qemu-system-arm"]:
        need(tool, "qemu-system-arm")
    for tool in ["llvm-objdump", "llvm-symbolizer"]:
        need(tool, "llvm")

    # Every instruction of the ELF, with its size.
    dis = subprocess.run(["llvm-objdump", "-d", "--no-show-raw-insn", a.elf],
                         capture_output=True, text=True, check=True).stdout
    addrs = [int(m.group(1), 16) for m in re.finditer(r"^\s+([0-9a-f]+):", dis, re.M)]
    size = {x: (addrs[i + 1] - x if i + 1 < len(addrs) else 2) for i, x in enumerate(addrs)}

    # Executions per instruction: a block's instructions come from its `IN:` listing, each
    # `Trace` line is one execution of the block at that host address (a host address is
    # reused after a flush: the latest listing before it counts).
    runs = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "exec.log")
        subprocess.run(
            ["qemu-system-arm", "-M", a.machine, "-display", "none", "-monitor", "none",
             "-serial", "none", "-chardev", "stdio,id=t", "-icount", "shift=0",
             "-semihosting-config", "enable=on,target=native,chardev=t",
             "-d", "in_asm,exec,nochain", "-D", log, "-kernel", a.elf],
            stdout=subprocess.DEVNULL, check=True, timeout=600)
        blocks, listing = {}, []
        trace = re.compile(r"Trace \d+: (0x[0-9a-f]+) ")
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("IN:"):
                    listing = []
                elif line.startswith("0x"):
                    listing.append(int(line.split(":", 1)[0], 16))
                elif line.startswith("Trace"):
                    m = trace.match(line)
                    if not m:
                        continue
                    if listing:
                        blocks[m.group(1)] = listing
                        listing = []
                    for x in blocks.get(m.group(1), ()):
                        runs[x] += 1

    # The chain of each instruction, outermost first.
    out = subprocess.run(["llvm-symbolizer", "--obj=" + a.elf, "--inlining", "--demangle",
                          "--output-style=JSON"], input="\n".join(hex(x) for x in addrs),
                         capture_output=True, text=True, check=True).stdout
    by = collections.Counter()
    code = collections.Counter()
    for x, line in zip(addrs, out.splitlines()):
        frames = json.loads(line).get("Symbol") or []
        chain = " > ".join(short(f["FunctionName"]) + ("" if a.no_lines else f"@{f['Line']}")
                           for f in frames[::-1][:a.depth])
        chain = chain or "?"
        code[chain] += size[x]
        if a.cold:
            if runs[x] == 0:
                by[chain] += size[x]
        else:
            by[chain] += runs[x]
    total = sum(by.values())
    what = "code bytes never executed" if a.cold else "instructions executed"
    print(f"{total:,} {what}" + (f" (of {sum(code.values()):,} bytes of code)" if a.cold else ""))
    for chain, n in by.most_common(a.top):
        extra = f" of {code[chain]:,}" if a.cold else f"  {100 * n / max(total, 1):5.1f} %"
        print(f"{n:>12,}{extra}  {chain}")


if __name__ == "__main__":
    main()
