#!/usr/bin/env bash
# Run the cluster and schedule tests N times in a row on a machine kept busy, to show they do not
# depend on its speed. Usage:
#
#   scripts/stress_tests.sh [N] [pytest arguments...]
#
# N defaults to 20. Without pytest arguments it runs the cluster and schedule tests (in-process
# clusters and the real-process acceptance tests); with them it runs those instead, e.g.
# `scripts/stress_tests.sh 5 tests/integration/test_worker_stream.py -k reattach`.
# The load is `stress-ng --cpu <cores>` (installed with apt-get when missing and possible), else
# one CPU-burning Python process per core; STRESS_CPUS sets how many. Each loop's output goes to
# $STRESS_LOG_DIR (default: a temporary directory); the exit code is 1 if any loop failed.
set -uo pipefail

cd "$(dirname "$0")/.."
loops="${1:-20}"
shift || true
pytest="${PYTEST:-.venv/bin/pytest}"
cpus="${STRESS_CPUS:-$(nproc)}"
log_dir="${STRESS_LOG_DIR:-$(mktemp -d -t ghpulse-stress.XXXXXX)}"
mkdir -p "$log_dir"

tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
    tests=(
        tests/integration/test_orchestration.py
        tests/integration/test_orchestrator.py
        tests/integration/test_worker_stream.py
        tests/integration/test_worker_protocol.py
        tests/integration/test_client.py
        tests/integration/test_metrics.py
        tests/integration/test_schedule_rpcs.py
        tests/integration/test_schedule_firing.py
        tests/integration/test_schedule_metrics.py
        tests/acceptance/test_crash_recovery.py
        tests/acceptance/test_schedule_processes.py
    )
fi

load_pids=()
stop_load() {
    for pid in "${load_pids[@]}"; do
        kill "$pid" 2>/dev/null
    done
    wait "${load_pids[@]}" 2>/dev/null
}
trap stop_load EXIT
trap 'exit 130' INT TERM  # so that the EXIT trap stops the load on Ctrl-C or a timeout too

if ! command -v stress-ng >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq stress-ng >/dev/null 2>&1 || echo "stress: apt-get could not install stress-ng"
fi
if command -v stress-ng >/dev/null; then
    echo "stress: stress-ng --cpu $cpus"
    stress-ng --cpu "$cpus" --quiet &
    load_pids+=($!)
else
    echo "stress: $cpus CPU-burning python processes"
    for _ in $(seq "$cpus"); do
        python3 -c "while True: pass" &
        load_pids+=($!)
    done
fi

failed=0
for i in $(seq "$loops"); do
    log="$log_dir/loop-$i.log"
    start=$(date +%s)
    if "$pytest" -q -p no:cacheprovider "${tests[@]}" >"$log" 2>&1; then
        result=passed
    else
        result=FAILED
        failed=$((failed + 1))
    fi
    echo "stress: loop $i/$loops $result in $(($(date +%s) - start))s: $(tail -n 1 "$log")"
    if [ "$result" = FAILED ]; then
        grep -E "^(FAILED|ERROR) " "$log" | sed 's/^/stress:   /'
    fi
done
echo "stress: $loops loops, $failed failed; logs in $log_dir"
[ "$failed" -eq 0 ]
