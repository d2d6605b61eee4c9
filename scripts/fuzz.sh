#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 60) each, from the
# committed seeds in fuzz/seeds/<target> plus whatever fuzz/corpus already
# holds, and prints the executions per target. A crash fails the run and
# leaves its input in fuzz/artifacts/<target>/.
#
# Only the stable toolchain exists here: RUSTC_BOOTSTRAP=1 lets cargo-fuzz use
# the unstable flags it needs (-Zsanitizer, coverage options). Sanitizers are
# off (-s none): the crate has no unsafe code, and debug assertions (-a) catch
# integer overflow.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_TARGET="${FUZZ_SECONDS:-60}"
TARGETS="${FUZZ_TARGETS:-token extract claims config render rsa p256 ed25519 userinfo login}"
export RUSTC_BOOTSTRAP=1
FLAGS=(-s none -a)

cargo fuzz build "${FLAGS[@]}"
total=0
for t in $TARGETS; do
    mkdir -p "fuzz/corpus/$t"
    cp -n fuzz/seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
    log="fuzz/corpus/$t.log"
    # -timeout: a single input taking 10 s is a hang worth reporting.
    if ! cargo fuzz run "${FLAGS[@]}" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
        -max_len=20000 -print_final_stats=1 >"$log" 2>&1; then
        tail -40 "$log"
        echo "fuzz: target $t FAILED; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    total=$((total + ${runs:-0}))
    echo "fuzz: $t: ${runs:-?} executions in ${SECONDS_PER_TARGET}s, no crash"
done
echo "fuzz: $total executions in total, no crash"
