#!/usr/bin/env bash
# Does a month cost more as the chain grows? (SPEC §8: at month 12 of a chain of equal months the
# peak is within 10 % of month 2's, the first with a prior state, and the CPU time within 20 %.)
#   - builds the release binary (BENCH_BIN to use another);
#   - generates a chain of K cycles of N lines each (seed 1; later cycles refund earlier orders);
#   - runs them in order on one state (the first with --first-cycle), each timed by
#     /usr/bin/time: wall, CPU (user + sys) and peak RSS (ru_maxrss), and the state's size after;
#   - prints a row per month and month K against month 2.
# Usage: benches/chain.sh [LINES] [MONTHS]   (default 1000000 12); BENCH_KEEP=1 keeps the data;
# BENCH_RUN_ARGS adds options to every run (e.g. "--partitions 4": the chain in partitions).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
K=${2:-12}
BENCH_DATA=${BENCH_DATA:-target/bench-chain}
source benches/common.sh
DATA="$BENCH_DATA/$N"
rm -rf "$DATA"
mkdir -p "$DATA"
"$BIN" generate --cycle 2026-01 --cycles "$K" --lines "$N" --seed 1 --out "$DATA/in" --quiet
mapfile -t BUNDLES < <(find "$DATA/in" -name bill_lines.csv -printf '%h\n' | sort)
echo "lines per month: $N; months: ${#BUNDLES[@]}; threads: $(nproc)"
echo "month     cycle     wall_s   cpu_s  peak_mb  state_mb"
first=--first-cycle
declare -a CPU RSS
for i in "${!BUNDLES[@]}"; do
  dir=${BUNDLES[$i]}
  cycle=$(basename "$dir")
  cat "$dir"/*.csv > /dev/null   # in the page cache, like every month
  /usr/bin/time -f '%e %U %S %M' -o "$DATA/time" \
    "$BIN" run $first --cycle "$cycle" --input "$dir" --out "$DATA/out" --state "$DATA/state" --quiet \
    ${BENCH_RUN_ARGS:-}
  first=
  read -r wall user sys kb < "$DATA/time"
  cpu=$(echo "$user + $sys" | bc)
  CPU[$i]=$cpu
  RSS[$i]=$kb
  state_mb=$(( $(stat -c %s "$DATA/state/state.db") / 1048576 ))
  printf '%-9s %-9s %6.2f %7.2f %8d %9d\n' "$((i + 1))" "$cycle" "$wall" "$cpu" "$((kb / 1024))" "$state_mb"
  # Only the newest month's outputs are kept: the disk holds the inputs and one month.
  if [ -n "${prev:-}" ]; then
    rm -rf "$(readlink -f "$DATA/out/$prev")" "$DATA/out/$prev"
  fi
  prev=$cycle
done
last=$(( ${#BUNDLES[@]} - 1 ))
if [ "$last" -ge 1 ]; then
  echo "month $((last + 1)) against month 2: peak $(echo "scale=3; ${RSS[$last]} / ${RSS[1]}" | bc)x (SPEC: <= 1.10x), CPU $(echo "scale=3; ${CPU[$last]} / ${CPU[1]}" | bc)x (SPEC: <= 1.20x)"
fi
[ "${BENCH_KEEP:-0}" = 1 ] || rm -rf "$DATA"
