#!/usr/bin/env bash
# The analyst tools' benchmark (SPEC §10): peak RSS (ru_maxrss via /usr/bin/time) and wall time
# of `explain --partner`, `--customer`, `--line` and `report` on a published cycle of N lines,
# in CSV and in Parquet. Targets at 10M lines: explain <= 500 MB and <= 5 s warm, report <= 1 GB.
#   - builds the release binary (BENCH_BIN to use another);
#   - generates a bundle of N lines (seed 1) and runs it once per format into $BENCH_DATA;
#   - picks the largest partner, one of its customers and one of its lines;
#   - runs each question twice (the first warms the page cache) and prints the second.
# Usage: benches/analyst.sh [LINES]   (default 1000000); BENCH_KEEP=1 keeps the generated data,
# BENCH_REUSE=1 measures the cycles a kept run published (same LINES and BENCH_DATA).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
BENCH_DATA=${BENCH_DATA:-target/bench-analyst}
source benches/common.sh
DATA="$BENCH_DATA/$N"
if [ "${BENCH_REUSE:-0}" = 1 ] && [ -d "$DATA/csv" ] && [ -d "$DATA/parquet" ]; then
  echo "reusing the cycles published in $DATA"
else
  rm -rf "$DATA"
  mkdir -p "$DATA"
  "$BIN" generate --cycle 2026-10 --lines "$N" --seed 1 --out "$DATA/in" --quiet
  BUNDLE=$(find "$DATA/in" -name bill_lines.csv -printf '%h\n' | head -1)
  for fmt in csv parquet; do
    "$BIN" run --first-cycle --cycle 2026-10 --input "$BUNDLE" --out "$DATA/$fmt" \
      --state "$DATA/$fmt/.state" --format "$fmt" --quiet
  done
fi
# The largest partner by lines, one of its customers and one of its lines (from the CSV run).
read -r PARTNER CUSTOMER LINE < <(awk -F, 'NR>1 {n[$2]++; c[$2]=$3; l[$2]=$1} END {for (p in n) print n[p], p, c[p], l[p]}' \
  "$DATA/csv/2026-10/line_outcomes.csv" | sort -rn | head -1 | cut -d' ' -f2-)
measure() {
  local label=$1; shift
  "$@" > /dev/null 2>&1 || true
  /usr/bin/time -f '%e %M' -o "$DATA/time" "$@" > /dev/null 2> "$DATA/err" || { cat "$DATA/err"; exit 1; }
  read -r secs kb < "$DATA/time"
  printf '%-9s %-8s %-44s %8.2f s %8.0f MB\n' "$N" "$fmt" "$label" "$secs" "$((kb / 1024))"
}
echo "lines     format   question                                     wall time   peak RSS"
for fmt in csv parquet; do
  common=(--cycle 2026-10 --out "$DATA/$fmt" --state "$DATA/$fmt/.state")
  measure "explain --partner $PARTNER" "$BIN" explain "${common[@]}" --partner "$PARTNER"
  measure "explain --customer $CUSTOMER" "$BIN" explain "${common[@]}" --partner "$PARTNER" --customer "$CUSTOMER"
  measure "explain --line $LINE" "$BIN" explain "${common[@]}" --partner "$PARTNER" --line "$LINE"
  rm -f "$DATA/$fmt"/2026-10-report*.html
  measure "report" "$BIN" report "${common[@]}" --output "$DATA/$fmt/report.html"
  rm -f "$DATA/$fmt"/report*.html "$DATA/$fmt"/2026-10-report*.html
done
[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$DATA"
