#!/usr/bin/env bash
# Timed benchmarks, then the report, even when a case failed (the report lists the failures);
# exits with pytest's status. Used by `make bench` and `tox -e bench`; extra arguments go to pytest,
# e.g. `tools/bench.sh --device cuda --bench-size full`. Output folder: $BENCH_OUT (reports/bench).
set -uo pipefail
PY=${PYTHON:-python}
OUT=${BENCH_OUT:-reports/bench}
mkdir -p "$OUT"
# One process: parallel workers would time each other's work.
"$PY" -m pytest benchmarks -n 0 -p no:randomly --benchmark-enable \
    --benchmark-json="$OUT/run.json" --junitxml="$OUT/junit.xml" "$@"
status=$?
if [ -s "$OUT/run.json" ]; then
    "$PY" -m parity.cli report --benchmark-json "$OUT/run.json" --junit "$OUT/junit.xml" --out "$OUT" || status=2
else
    echo "bench: no timings were written to $OUT/run.json" >&2
fi
exit $status
