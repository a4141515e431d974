#!/usr/bin/env bash
# Renders the demo cycle's HTML report in headless Chromium and saves a screenshot, to check by
# eye that it opens without errors and shows one waterfall per partner. Not part of the test
# suite (it needs Debian's chromium: apt-get install chromium).
# Usage: scripts/screenshot-report.sh [OUT_PNG]   (default target/report.png)
set -euo pipefail
cd "$(dirname "$0")/.."
png=${1:-target/report.png}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cargo build --quiet --locked
bin=target/debug/incentives
"$bin" --quiet run --first-cycle --cycle 2026-10 --input fixtures/demo/2026-10 --out "$work/out" --state "$work/state"
"$bin" --quiet report --out "$work/out" --cycle 2026-10 --output "$work/report.html"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --window-size=1200,2400 \
    --screenshot="$(realpath -m "$png")" "file://$work/report.html" 2> "$work/chromium.log"
if grep -Ei "uncaught|error.*report.html" "$work/chromium.log"; then
    echo "chromium reported errors (above)" >&2
    exit 1
fi
echo "screenshot: $png"
