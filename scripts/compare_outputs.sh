#!/usr/bin/env bash
# Runs two builds of the engine on the same inputs and compares every output byte for byte
# (manifest.json without its timings and run times). For refactors that must not change a byte.
#   scripts/compare_outputs.sh OLD_BIN NEW_BIN [LINES]
# Inputs: the demo month, the chain fixtures (three cycles and a corrected re-run), the worked
# example, and (LINES > 0) two generated months of LINES lines, a chain; CSV and Parquet. Prints one line per
# comparison and exits 1 if any differs.
set -euo pipefail
old=$(realpath "$1"); new=$(realpath "$2"); lines=${3:-0}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
status=0

strip_manifest() { # drop timings and run times, keep the rest
    python3 - "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for k in ("timings", "run_at", "started_at", "finished_at", "elapsed_ms"):
    m.pop(k, None)
print(json.dumps(m, sort_keys=True, indent=1))
PY
}

compare() { # name dir_a dir_b
    local a=$2 b=$3 bad=0
    while IFS= read -r f; do
        if [[ $f == */manifest.json ]]; then
            cmp -s <(strip_manifest "$a/$f") <(strip_manifest "$b/$f") || { echo "  differs: $f"; bad=1; }
        else
            cmp -s "$a/$f" "$b/$f" || { echo "  differs: $f"; bad=1; }
        fi
    done < <(cd "$a" && find -L . -type f | sort)
    [[ $(cd "$a" && find -L . -type f | sort) == $(cd "$b" && find -L . -type f | sort) ]] || { echo "  file lists differ"; bad=1; }
    if [[ $bad == 0 ]]; then echo "same    $1"; else echo "DIFFERS $1"; status=1; fi
}

run_chain() { # bin tag format cycles...
    local bin=$1 tag=$2 format=$3; shift 3
    local first=--first-cycle
    for spec in "$@"; do
        local cycle=${spec%%=*} input=${spec#*=}
        "$bin" run --quiet $first --cycle "$cycle" --input "$input" --format "$format" \
            --out "$work/$tag/$format/out" --state "$work/$tag/$format/state" >/dev/null
        first=
    done
}

inputs=("demo:2026-10=$repo/fixtures/demo/2026-10"
        "example:2026-10=$repo/fixtures/example/first-cycle/bundle"
        "chain:2026-09=$repo/fixtures/chain/2026-09 2026-10=$repo/fixtures/chain/2026-10 2026-11=$repo/fixtures/chain/2026-11 2026-10=$repo/fixtures/chain/2026-10-corrected")
if [[ $lines -gt 0 ]]; then
    "$new" generate --cycle 2026-10 --lines "$lines" --seed 7 --out "$work/gen/2026-10" >/dev/null
    "$new" generate --cycle 2026-11 --lines "$lines" --seed 7 --out "$work/gen/2026-11" \
        --previous "$work/gen/2026-10" >/dev/null
    inputs+=("generated-$lines:2026-10=$work/gen/2026-10 2026-11=$work/gen/2026-11")
fi
for entry in "${inputs[@]}"; do
    name=${entry%%:*}; specs=${entry#*:}
    for format in csv parquet; do
        # shellcheck disable=SC2086
        run_chain "$old" "$name-old" "$format" $specs
        # shellcheck disable=SC2086
        run_chain "$new" "$name-new" "$format" $specs
        for cycle_dir in "$work/$name-old/$format/out"/*; do
            c=$(basename "$cycle_dir")
            compare "$name $format $c" "$cycle_dir" "$work/$name-new/$format/out/$c"
        done
    done
    rm -rf "$work/$name-old" "$work/$name-new"
done
exit $status
