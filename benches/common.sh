# Sourced by the benchmark scripts: BIN, the binary measured (BENCH_BIN, or the release build
# made here).
if [ -z "${BENCH_BIN:-}" ]; then
  cargo build --release --locked --quiet
  BIN=target/release/incentives
else
  BIN=$BENCH_BIN
fi
