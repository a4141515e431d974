#!/usr/bin/env bash
# The benchmark of SPEC §8, in one run on one machine:
#   - builds the release binary;
#   - generates bundles of 1M, 3M and 10M lines (seed 1), cached under $BENCH_DATA (made again
#     when the generator's source changes);
#   - times a full `incentives run --first-cycle --threads 2 --memory-budget $BENCH_BUDGET`
#     (default 1GiB: a month too large for it runs in partitions) on each, with CSV outputs (the
#     default) and with `--format parquet`, and records peak RSS;
#     every timed command starts with the bundle in the page cache (read once before it), so
#     neither side pays for disk reads the other does not;
#   - times DuckDB (from PyPI, in a venv this script makes) running benches/anchor.sql, which
#     reads the same bill_lines.csv + partners.csv and computes the two base levers with exact
#     DECIMAL, on 2 threads;
#   - unless BENCH_FLOOR=0, times DuckDB running benches/outputs_floor.sql: reading the same
#     bill_lines.csv and writing files of the shape, order and size of a run's large outputs,
#     synced to disk, with no rule evaluated (a floor under the outputs' cost, not a target);
#   - checks that --threads 1 and --threads 2 give byte-identical outputs at the smallest size,
#     in both formats;
#   - prints a table: lines, our wall time, DuckDB's, the ratio, peak RSS, lines/s, growth.
# Every timed command runs $BENCH_REPEAT times (default 3): the table shows the median wall time
# and the highest peak RSS of those runs (single runs on this VM move by +-15 %).
#   - unless BENCH_CHAIN=0, runs benches/chain.sh at the smallest size: month 12 against month 2.
#   - unless BENCH_TOP_SHARE=0, times the same run (CSV) on a bundle of the largest size up to 10M
#     made with `generate --top-share ${BENCH_TOP_SHARE:-0.25}` (one partner holds that share);
#   - unless BENCH_100M=0, when the disk holds it (66 GB free beside $BENCH_DATA: 25 GB of inputs
#     and a spill folder of up to twice bill_lines.csv; the outputs come once partitions are gone),
#     generates 100M lines, times one run with --format parquet, and removes the bundle after.
# Usage: benches/anchor.sh [LINES ...]   (default: 1000000 3000000 10000000)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=("${@:-1000000 3000000 10000000}")
read -r -a SIZES <<< "${SIZES[*]}"
BENCH_DATA=${BENCH_DATA:-target/bench-data}
VENV=${BENCH_VENV:-target/bench-venv}
DUCKDB_VERSION=2.0.1
THREADS=2
REPEAT=${BENCH_REPEAT:-3}
FLOOR=${BENCH_FLOOR:-1}
BUDGET=${BENCH_BUDGET:-1GiB}

cargo build --release --locked --quiet
BIN=target/release/incentives
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import duckdb" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "duckdb==$DUCKDB_VERSION"
fi
PY="$VENV/bin/python"
mkdir -p "$BENCH_DATA"
GENERATOR_SOURCE=$(cat src/generate/*.rs | sha256sum | cut -c1-16)

json() { "$PY" -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
# Median wall_s (and load_s when present) and highest peak_rss_mb of JSON lines on stdin.
combine() {
    "$PY" -c '
import json, statistics, sys
runs = [json.loads(l) for l in sys.stdin if l.strip()]
out = {"wall_s": statistics.median(r["wall_s"] for r in runs),
       "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
       "status": max(r["status"] for r in runs)}
if all("load_s" in r for r in runs):
    out["load_s"] = statistics.median(r["load_s"] for r in runs)
print(json.dumps(out))'
}
# One whole run of ours on $bundle, as JSON with its load phase: measure_run [--format parquet]
measure_run() {
    local out result
    out=$(mktemp -d "$BENCH_DATA/out.XXXXXX")
    warm
    result=$("$PY" benches/measure.py cmd "$BIN" run --first-cycle "$@" --cycle 2026-10 --input "$bundle" \
        --out "$out" --state "$out/state" --threads "$THREADS" --memory-budget "$BUDGET")
    if [ "$(echo "$result" | json status)" = 0 ]; then
        "$PY" -c "import json,sys; r=json.loads(sys.argv[1]); m=json.load(open(sys.argv[2])); r['load_s']=m['timings']['phases_ms']['load']/1000; print(json.dumps(r))" \
            "$result" "$out/2026-10/manifest.json"
    else
        echo "$result"
    fi
    rm -rf "$out"
}
# DuckDB writing the outputs' shape (benches/outputs_floor.sql) on $bundle, as JSON.
measure_floor() {
    local out
    out=$(mktemp -d "$BENCH_DATA/floor.XXXXXX")
    warm
    "$PY" benches/measure.py duckdb-write benches/outputs_floor.sql "$bundle" "$out" "$THREADS"
    rm -rf "$out"
}
repeat() { for _ in $(seq "$REPEAT"); do "$@"; done | combine; }
warm() { cat "$bundle"/*.csv > /dev/null; }
# Makes $bundle with `generate --lines $1` and any further options, unless the generator's code
# that made it is the same.
ensure_bundle() {
    local n=$1; shift
    if [ ! -f "$bundle/generator.json" ] || [ "$(cat "$bundle/.generator-source" 2>/dev/null)" != "$GENERATOR_SOURCE" ]; then
        echo "generating $n lines into $bundle ..." >&2
        rm -rf "$bundle"
        "$BIN" generate --cycle 2026-10 --lines "$n" --seed 1 --out "$bundle" "$@" >/dev/null
        echo "$GENERATOR_SOURCE" > "$bundle/.generator-source"
    fi
}

rows=()
prev_wall=""
first_wall=""
for n in "${SIZES[@]}"; do
    bundle="$BENCH_DATA/seed1-$n"
    # A cached bundle is used only if the generator's code is the one that made it.
    ensure_bundle "$n"
    ours=$(repeat measure_run)
    [ "$(echo "$ours" | json status)" = 0 ] || { echo "incentives run failed on $n lines" >&2; exit 1; }
    load_s=$(echo "$ours" | json load_s)
    pq=$(repeat measure_run --format parquet)
    [ "$(echo "$pq" | json status)" = 0 ] || { echo "incentives run --format parquet failed on $n lines" >&2; exit 1; }
    validate=$(repeat eval 'warm; "$PY" benches/measure.py cmd "$BIN" --quiet validate --cycle 2026-10 --input "$bundle" --memory-budget 1GiB')
    duck=$(repeat eval 'warm; "$PY" benches/measure.py duckdb benches/anchor.sql "$bundle" "$THREADS"')
    floor_s=-
    [ "$FLOOR" = 0 ] || floor_s=$(repeat measure_floor | json wall_s)
    rows+=("$n $(echo "$ours" | json wall_s) $(echo "$duck" | json wall_s) $(echo "$ours" | json peak_rss_mb) $load_s $(echo "$validate" | json wall_s) $(echo "$validate" | json peak_rss_mb) $(echo "$pq" | json wall_s) $(echo "$pq" | json peak_rss_mb) $floor_s")
done

# One partner holding a share of the month, at the largest size up to 10M (SPEC §8).
TOP_SHARE=${BENCH_TOP_SHARE:-0.25}
top=""
if [ "$TOP_SHARE" != 0 ]; then
    top_n=${SIZES[0]}
    for n in "${SIZES[@]}"; do [ "$n" -le 10000000 ] && top_n=$n; done
    bundle="$BENCH_DATA/seed1-top$TOP_SHARE-$top_n"
    ensure_bundle "$top_n" --top-share "$TOP_SHARE"
    top=$(repeat measure_run)
fi
# 100M lines with Parquet outputs, once, when the disk holds it; the bundle removed after.
big=""
if [ "${BENCH_100M:-1}" != 0 ]; then
    free_gb=$(df --output=avail -BG "$BENCH_DATA" | tail -1 | tr -dc 0-9)
    if [ "$free_gb" -ge 66 ]; then
        bundle="$BENCH_DATA/seed1-100000000"
        ensure_bundle 100000000
        big=$(measure_run --format parquet)
        rm -rf "$bundle"
    else
        big="skipped: ${free_gb} GB free beside $BENCH_DATA, 66 GB needed"
    fi
fi

# Thread-count determinism at the smallest size: every output byte-identical but the manifest's
# timings.
n=${SIZES[0]}
strip='import json,sys; m=json.load(open(sys.argv[1])); m.pop("timings",None); print(json.dumps(m,sort_keys=True))'
same=yes
for format in csv parquet; do
    one=$(mktemp -d "$BENCH_DATA/t1.XXXXXX"); two=$(mktemp -d "$BENCH_DATA/t2.XXXXXX")
    for t in 1 2; do
        dir=$one; [ "$t" = 2 ] && dir=$two
        "$BIN" run --first-cycle --format "$format" --cycle 2026-10 --input "$BENCH_DATA/seed1-$n" \
            --out "$dir" --state "$dir/state" --threads "$t" >/dev/null 2>&1
    done
    for f in $(cd "$one/2026-10" && find . -type f ! -name manifest.json | sort); do
        cmp -s "$one/2026-10/$f" "$two/2026-10/$f" || same=no
    done
    [ "$("$PY" -c "$strip" "$one/2026-10/manifest.json")" = "$("$PY" -c "$strip" "$two/2026-10/manifest.json")" ] || same=no
    rm -rf "$one" "$two"
done

echo
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB; threads: $THREADS; duckdb $DUCKDB_VERSION"
echo "each figure: median wall time of $REPEAT runs, highest peak RSS of them"
echo "ours_s: the whole run (rss: its peak); load_s: its load phase (manifest timings);"
echo "validate_s: incentives validate --memory-budget 1GiB alone (the ownership pass checking all nine files, nothing written; vrss: its peak)"
echo "pq_s: the whole run with --format parquet (pq_rss: its peak)"
echo "dout_s: DuckDB reading bill_lines.csv and writing the large outputs' shape, synced (benches/outputs_floor.sql);"
echo "        ours/dout: our whole run over it (- when BENCH_FLOOR=0)"
printf '%-10s %8s %9s %7s %7s %7s %10s %8s %8s %10s %7s %7s %8s %7s %7s %9s\n' lines ours_s duckdb_s ratio load_s validate_s v_ratio vrss_mb rss_mb lines/s growth pq_s pq_ratio pq_rss dout_s ours/dout
for r in "${rows[@]}"; do
    read -r n ours duck rss load vs vrss pq pqrss floor <<< "$r"
    "$PY" - "$n" "$ours" "$duck" "$rss" "$load" "$vs" "$vrss" "$pq" "$pqrss" "$floor" "$prev_wall" <<'PY'
import sys
n, ours, duck, rss, load, vs, vrss, pq, pqrss, floor, prev = sys.argv[1:12]
n, ours, duck, rss, load, vs, vrss, pq, pqrss = int(n), float(ours), float(duck), float(rss), float(load), float(vs), float(vrss), float(pq), float(pqrss)
growth = f"{ours / float(prev):.2f}x" if prev else "-"
dout = f"{float(floor):7.2f} {ours / float(floor):8.2f}x" if floor != "-" else f"{'-':>7} {'-':>9}"
print(f"{n:<10} {ours:8.2f} {duck:9.2f} {ours / duck:6.2f}x {load:7.2f} {vs:10.2f} {vs / duck:7.2f}x {vrss:8.0f} {rss:8.0f} {n / ours:10.0f} {growth:>7} {pq:7.2f} {pq / duck:7.2f}x {pqrss:7.0f} {dout}")
PY
    prev_wall=$ours
    [ -n "$first_wall" ] || first_wall=$ours
done
if [ "${#rows[@]}" -gt 1 ]; then
    "$PY" -c "import sys; a, b, n, m = map(float, sys.argv[1:5]); print(f'growth {int(n)} -> {int(m)} lines: {b / a:.2f}x (SPEC: at most {m / n * 1.05:.2f}x)')" \
        "$first_wall" "$prev_wall" "${SIZES[0]}" "${SIZES[${#SIZES[@]}-1]}"
fi
echo "outputs identical with --threads 1 and 2 at ${SIZES[0]} lines (CSV and Parquet): $same"
if [ -n "$top" ]; then
    printf '%s lines, --top-share %s, CSV: %.2f s, peak %.0f MB (status %s)\n' "$top_n" "$TOP_SHARE" \
        "$(echo "$top" | json wall_s)" "$(echo "$top" | json peak_rss_mb)" "$(echo "$top" | json status)"
fi
case "$big" in
    "") ;;
    skipped*) echo "100000000 lines, Parquet: $big" ;;
    *) printf '100000000 lines, Parquet: %.2f s, peak %.0f MB (status %s)\n' "$(echo "$big" | json wall_s)" \
        "$(echo "$big" | json peak_rss_mb)" "$(echo "$big" | json status)" ;;
esac
# Month 12 against month 2 of a chain of equal months (SPEC §8: the state read on demand).
if [ "${BENCH_CHAIN:-1}" = 1 ]; then
    echo
    BENCH_BIN="$BIN" bash benches/chain.sh "${SIZES[0]}" 12 | tail -1
fi
