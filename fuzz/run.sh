#!/usr/bin/env bash
# Runs consort's fuzz targets one after another and prints, per target, the
# executions and seconds run and whether it crashed.
#
#   fuzz/run.sh                      # every target, 600 s each
#   fuzz/run.sh 30                   # every target, 30 s each
#   fuzz/run.sh 600 consensus tx     # some targets
#
# Needs a nightly toolchain and cargo-fuzz (cargo install cargo-fuzz). The
# corpus of each target grows in fuzz/corpus/<target> (not committed), seeded
# from fuzz/seeds/<target>; crashes land in fuzz/artifacts/<target>. Logs go to
# $FUZZ_LOGS (default fuzz/target/logs).
set -uo pipefail
cd "$(dirname "$0")"

secs=${1:-600}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
logs=${FUZZ_LOGS:-target/logs}
mkdir -p "$logs"

# No sanitizer: the crate forbids unsafe code, and without ASan a run makes
# about twice the executions. Debug assertions (and so overflow checks) stay on.
cargo +nightly fuzz build -s none || exit 1

status=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    if [ -d "seeds/$t" ]; then
        cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    fi
    start=$(date +%s)
    nice cargo +nightly fuzz run -s none "$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -print_final_stats=1 >"$logs/$t.log" 2>&1
    rc=$?
    took=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t.log" | grep -o '[0-9]*$' | tail -1)
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result="CRASH (exit $rc, see $logs/$t.log and artifacts/$t)"
        status=1
    fi
    printf 'fuzz %-16s %10s execs %6ss  %s\n' "$t" "${execs:-?}" "$took" "$result" | tee -a "$logs/summary.txt"
done
exit $status
