#!/usr/bin/env bash
# NanoNAS's three CIFAR-10 budgets as a benchmark you can rerun (issue "A search that beats
# NanoNAS's own picks", item 4). For each chip:
#   1. NanoNAS's published pick is trained with the search's final recipe
#      (`cargo tinynas train --recipe final`) and measured on the chip's core in QEMU, linked with
#      the chip's real RAM and flash (`bench --board B --chip C`);
#   2. a firmware project for that chip is made, with the budget NanoNAS used (the chip's whole
#      SRAM and flash) and a latency ceiling equal to the pick's measured latency;
#   3. `cargo tinynas search --strategy nanonas` and `--strategy evolve --time-budget` run there.
# Each command runs under benchmarks/tree_rss.py (peak RSS of the whole process tree, wall time).
# One table is written to $OUT/table.md (and every JSON line to $OUT/<chip>/).
#
#   bash benchmarks/nanonas-cifar10.sh                 # all three chips (about 5 hours here)
#   CHIPS=STM32L010RBTx bash benchmarks/nanonas-cifar10.sh   # one chip
#
# Settings (environment): CHIPS, OUT (default target/nanonas-cifar10), TIME_BUDGET (evolve's
# --time-budget, default 55m), PROXY_EPOCHS (3), FINAL_EPOCHS (30), POPULATION (6),
# GENERATIONS (evolve's --generations; default unset: generations until the time budget), SEED (the
# projects' seed, 1; another seed shows how far one search moves from run to run), THREADS (2), STRATEGIES ("nanonas evolve"; an ablation is
# evolve-without-PART[,PART], PART one of growth, screening, promotion, pooling, fresh, calibration, seeds, families), CIFAR (a folder with train/ and
# test/ class folders; default: ../shared/data/cifar10 unpacked into $OUT/cifar10), MEMORY_LIMIT
# (default 256M: each search runs in a cgroup v1 memory cgroup of that size holding its whole
# process tree, as on a small gateway; the tool then builds firmware one job at a time. Needs
# root; without it, or with MEMORY_LIMIT=, the searches run unlimited and the table says so),
# COLD_CACHE (default 1: drop the page cache before each limited search, so the toolchain's files
# are charged to the search's cgroup; for a cold build cache too, point TINYNAS_CACHE_DIR at an
# empty folder. Run nothing else that reads the same toolchain while a search runs: the pages it
# caches are charged to it, not to the search).
# Needs python3 (for tree_rss.py and the table) and what `bash .ci/setup` installs.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$repo/target/nanonas-cifar10}
TIME_BUDGET=${TIME_BUDGET:-55m}
PROXY_EPOCHS=${PROXY_EPOCHS:-3}
FINAL_EPOCHS=${FINAL_EPOCHS:-30}
POPULATION=${POPULATION:-6}
GENERATIONS=${GENERATIONS:-}
SEED=${SEED:-1}
THREADS=${THREADS:-2}
STRATEGIES=${STRATEGIES:-nanonas evolve}
CHIPS=${CHIPS:-STM32L010RBTx STM32L151UCYx STM32L412KBUx}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# chip -> emulated board of its core, RAM and flash budget (the chip's whole memory), pick's k.
budget() {
    case "$1" in
        STM32L010RBTx) echo "qemu-m0-an385 20480 131072 6" ;;
        STM32L151UCYx) echo "qemu-m3-an385 32768 262144 8" ;;
        STM32L412KBUx) echo "qemu-m4 40960 131072 14" ;;
        *) echo "unknown chip $1: use STM32L010RBTx, STM32L151UCYx or STM32L412KBUx" >&2; exit 2 ;;
    esac
}

if [ -z "${CIFAR:-}" ]; then
    CIFAR=$OUT/cifar10
    if [ ! -d "$CIFAR/test" ]; then
        src=$repo/../shared/data/cifar10
        [ -f "$src/train.tar.gz" ] || { echo "no CIFAR-10 at $src: set CIFAR to a folder with train/ and test/" >&2; exit 2; }
        mkdir -p "$CIFAR.partial"
        tar xzf "$src/train.tar.gz" -C "$CIFAR.partial"
        tar xzf "$src/test.tar.gz" -C "$CIFAR.partial"
        mv "$CIFAR.partial" "$CIFAR"
    fi
fi

# TOOL: a cargo-tinynas binary to use instead of building this checkout's (with
# TINYNAS_RUNTIME_PATH, the runtime its bench firmware builds with: a frozen copy lets you edit
# the kernels while the benchmark runs).
if [ -z "${TOOL:-}" ]; then
    (cd "$repo" && cargo build --release --locked -p cargo-tinynas)
    TOOL=$repo/target/release/cargo-tinynas
fi
tool() { "$TOOL" tinynas "$@"; }
rss() { python3 "$repo/benchmarks/tree_rss.py" "$@"; }
MEMORY_LIMIT=${MEMORY_LIMIT-256M}
COLD_CACHE=${COLD_CACHE:-1}
# limited JSON CMD...: runs CMD in a fresh memory cgroup of $MEMORY_LIMIT (when one can be made)
# and writes the cgroup's limit, peak usage (page cache included) and OOM kills to JSON.
limited() {
    local json=$1 cg=/sys/fs/cgroup/memory/tinynas-bench-$$ code=0
    shift
    if [ -z "$MEMORY_LIMIT" ] || ! mkdir "$cg" 2>/dev/null; then
        [ -z "$MEMORY_LIMIT" ] || echo "cannot make a memory cgroup (needs root and cgroup v1): running unlimited" >&2
        echo '{"limit_bytes": null}' >"$json"
        "$@" || code=$?
        return $code
    fi
    echo "$MEMORY_LIMIT" >"$cg/memory.limit_in_bytes"
    # A cold page cache: cgroup v1 charges a cached file page to the cgroup that first read it, so
    # toolchain files (rustc's libraries, the linker, QEMU) that earlier builds left cached would be
    # used by the search without counting against its limit. Dropping the cache first puts them in.
    local cold=false
    if [ "$COLD_CACHE" = 1 ] && sync && echo 3 2>/dev/null >/proc/sys/vm/drop_caches; then
        cold=true
    fi
    sh -c 'echo $$ > "$0" && exec "$@"' "$cg/cgroup.procs" "$@" || code=$?
    local oom
    oom=$(awk '$1 == "oom_kill" {print $2}' "$cg/memory.oom_control")
    printf '{"limit_bytes": %s, "max_usage_bytes": %s, "oom_kills": %s, "cold_page_cache": %s}\n' \
        "$(cat "$cg/memory.limit_in_bytes")" "$(cat "$cg/memory.max_usage_in_bytes")" "${oom:-0}" "$cold" >"$json"
    rmdir "$cg" 2>/dev/null || true
    return $code
}

for chip in $CHIPS; do
    read -r board ram flash k <<<"$(budget "$chip")"
    dir=$OUT/$chip
    mkdir -p "$dir"
    echo "== $chip: $board, $ram B SRAM, $flash B flash, NanoNAS's pick A($k,4)" >&2
    # 1. The pick, with the final recipe, measured on the chip's core.
    if [ ! -f "$dir/pick.json" ]; then
        rss "$dir/pick.rss.json" "$TOOL" tinynas train \
            --data "$CIFAR" --arch "nanonas:k=$k,c=4" --recipe final --epochs "$FINAL_EPOCHS" \
            --threads "$THREADS" --out "$dir/pick.tnas" --message-format json >"$dir/pick.train.jsonl"
        tail -n 1 "$dir/pick.train.jsonl" >"$dir/pick.json"
    fi
    # Measured as the search measures its candidates: the projects below set no [profile.release],
    # so their firmware builds with cargo's release default, no debug info (the code differs: the
    # STM32L010's pick runs 760 instructions fewer than with debug info). Measured again on every
    # run, so the ceiling is the tool's own figure for this pick.
    tool bench --model "$dir/pick.tnas" --board "$board" --chip "$chip" --debug false \
        --message-format json >"$dir/pick.bench.json"
    latency=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["latency"]["max"])' "$dir/pick.bench.json")
    # 2. The firmware project of that chip (the emulated board links with the chip's sizes).
    for strategy in $STRATEGIES; do
        p=$dir/$strategy
        mkdir -p "$p/src"
        cat >"$p/Cargo.toml" <<TOML
[package]
name = "fw-$(echo "$chip" | tr 'A-Z' 'a-z')"
version = "0.1.0"
edition = "2021"

[dependencies]

[workspace]

[package.metadata.tinynas]
data = "$CIFAR"
input = "32x32x3"
board = "$board"
chip = "$chip"
max-ram = $ram
max-flash = $flash
# The pick's measured latency: instructions at one per cycle, at 1 kHz that many milliseconds.
clock-hz = 1000
max-latency-ms = $latency
seed = $SEED
proxy-epochs = $PROXY_EPOCHS
final-epochs = $FINAL_EPOCHS
TOML
        echo '#![no_std]' >"$p/src/lib.rs"
        # 3. The search (resumes from its journal if it was stopped).
        extra=()
        base=${strategy%%-*}
        evolve=(--population "$POPULATION" --time-budget "$TIME_BUDGET")
        if [ -n "$GENERATIONS" ]; then evolve+=(--generations "$GENERATIONS"); fi
        case "$strategy" in
            evolve) extra=("${evolve[@]}") ;;
            evolve-without-*) extra=("${evolve[@]}" --evolve-without "${strategy#evolve-without-}") ;;
            nanonas) ;;
            *) echo "unknown strategy $strategy: nanonas, evolve or evolve-without-PART[,PART]" >&2; exit 2 ;;
        esac
        if [ ! -f "$p/search.done" ]; then
            (cd "$p" && limited "$p/search.cgroup.json" python3 "$repo/benchmarks/tree_rss.py" "$p/search.rss.json" "$TOOL" tinynas search \
                --strategy "$base" "${extra[@]}" --threads "$THREADS" --no-generate \
                --message-format json >"$p/search.jsonl")
            touch "$p/search.done"
        fi
    done
done

# The table.
PROXY_EPOCHS=$PROXY_EPOCHS python3 - "$OUT" $CHIPS <<'PY'
import json, os, sys
out, chips = sys.argv[1], sys.argv[2:]
picks = {"STM32L010RBTx": "A(6,4)", "STM32L151UCYx": "A(8,4)", "STM32L412KBUx": "A(14,4)"}
def label(strategy):
    if strategy.startswith("evolve-without-"):
        return f"evolve --evolve-without {strategy[len('evolve-without-'):]}"
    return strategy
def last(path, reason):
    rows = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    return next((r for r in reversed(rows) if r.get("reason") == reason), None)
details = []
proxy = int(os.environ.get("PROXY_EPOCHS", "3"))
lines = ["| chip (budget) | network | int8 test | instructions | peak SRAM | flash | candidates | wall | peak memory (process tree) |",
         "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
for chip in chips:
    d = os.path.join(out, chip)
    train = last(os.path.join(d, "pick.train.jsonl"), "train-report")
    bench = json.load(open(os.path.join(d, "pick.bench.json")))
    rss = json.load(open(os.path.join(d, "pick.rss.json")))
    flash = bench["flash_bytes"] - bench["flash"].get("bench_input_bytes", 0)
    mib = lambda b: f"{b / 2**20:.0f} MiB"
    # The tree's memory: the sum of Pss (shared pages once) where tree_rss.py measured it, and
    # the sum of VmRSS (shared libraries counted in every process that maps them).
    mem = lambda r: (f"{mib(r['peak_pss_bytes'])} PSS ({mib(r['peak_rss_bytes'])} RSS sum)"
                     if "peak_pss_bytes" in r else f"{mib(r['peak_rss_bytes'])} RSS sum")
    lines.append(f"| {chip} | NanoNAS's pick {picks.get(chip, '?')} (`train --recipe final`) | {100 * train['int8_test_accuracy']:.1f} % | "
                 f"{bench['latency']['max']:,} | {bench['peak_sram_bytes']:,} B | {flash:,} B | - | {rss['wall_seconds'] / 60:.0f} min | {mem(rss)} |")
    ablations = sorted(x for x in os.listdir(d) if x.startswith("evolve-without-"))
    for strategy in ["nanonas", "evolve"] + ablations:
        p = os.path.join(d, strategy)
        if not os.path.exists(os.path.join(p, "search.jsonl")):
            continue
        done = last(os.path.join(p, "search.jsonl"), "search-finished")
        rss = json.load(open(os.path.join(p, "search.rss.json")))
        if done is None:
            lines.append(f"| {chip} | `search --strategy {label(strategy)}`: did not finish (exit {rss['exit_code']}) | | | | | | | |")
            continue
        f, m = done["final"], done["final"]["measured"]
        rows = [json.loads(l) for l in open(os.path.join(p, "search.jsonl")) if l.startswith("{")]
        measured = sum(1 for r in rows if r.get("reason") == "candidate" and r.get("kind") == "candidate")
        screened = sum(1 for r in rows if r.get("reason") == "candidate" and r.get("kind") == "screen")
        cands = f"{measured}" + (f" (+{screened} screened)" if screened else "")
        cg_path = os.path.join(p, "search.cgroup.json")
        cg = json.load(open(cg_path)) if os.path.exists(cg_path) else {}
        limit = (f" in a {mib(cg['limit_bytes'])} cgroup{' (cold page cache)' if cg.get('cold_page_cache') else ''}, "
                 f"peak {mib(cg['max_usage_bytes'])}, {cg['oom_kills']} OOM kills") if cg.get("limit_bytes") else ", no memory limit"
        lines.append(f"| {chip} | `search --strategy {label(strategy)}`: {done['winner']} | {100 * f['int8_test']:.1f} % | {m['latency']:,} | "
                     f"{m['peak_sram_bytes']:,} B | {m['flash_bytes']:,} B | {cands} | {rss['wall_seconds'] / 60:.0f} min | {mem(rss)}{limit} |")
        pred = done.get("predictor") or {}
        best = lambda e: max((r["int8_val"] for r in rows if r.get("kind") == "candidate" and r.get("status") == "fits"
                              and r.get("epochs") == e and r.get("int8_val") is not None), default=None)
        pct = lambda v: "-" if v is None else f"{100 * v:.1f} %"
        size = done.get("size_predictor") or {}
        sizes = (f"{pct(size['flash']['mean_relative_error'])} / {pct(size['flash']['max_relative_error'])} over {size['candidates']}"
                 if size else "-")
        details.append(f"| {chip} | `{label(strategy)}` | {f.get('params', 0):,} | {pct(best(proxy))} / {pct(best(3 * proxy))} | "
                       f"{pct(pred.get('mean_relative_error'))} / {pct(pred.get('max_relative_error'))} over {pred.get('candidates', 0)} | {sizes} |")
table = "\n".join(lines) + "\n"
# What the searches saw: the winner's parameters, the best int8 validation score of a candidate that
# fits after the proxy epochs and after three times as many (the promotion rung), the latency
# predictor's errors, the flash predictor's (`evolve`).
table += "\n" + "\n".join(["| chip | search | winner's parameters | best validation at proxy / 3x proxy epochs | latency predictor: mean / largest error | flash predictor: mean / largest error |",
                           "|---|---|---:|---:|---:|---:|"] + details) + "\n"
open(os.path.join(out, "table.md"), "w").write(table)
print(table)
PY
