#!/usr/bin/env bash
# Timed benchmarks, then the report, even when a case failed (the report lists the failures);
# exits with pytest's status. Used by `make bench` and `tox -e bench`; extra arguments go to pytest,
# e.g. `tools/bench.sh --device cuda --bench-size full`.
# Output folder: a new run folder reports/bench/<UTC time>-<id>/ (reports/bench/latest points at the
# newest), or $BENCH_OUT, which is refused if it holds a previous run's output unless BENCH_OVERWRITE=1.
set -uo pipefail
PY=${PYTHON:-python}
if [ -n "${BENCH_OUT:-}" ]; then
    overwrite=()
    [ "${BENCH_OVERWRITE:-}" = 1 ] && overwrite=(--overwrite)
    OUT=$("$PY" -m parity.cli runs claim "$BENCH_OUT" --flag BENCH_OVERWRITE=1 --command "tools/bench.sh $*" \
        --produces run.json,junit.xml,report.md,index.html,plots ${overwrite[@]+"${overwrite[@]}"}) || exit 2
else
    OUT=$("$PY" -m parity.cli runs new reports/bench --command "tools/bench.sh $*") || exit 2
fi
# Transparent huge pages for torch's CPU tensors of 2 MiB and more (read once, when torch starts): a
# weight's speed depends on where its pages land, and the groups move every weight to fresh memory
# before each round to draw that again (parity/bench/groups.py: FRESH_STORAGE); with 2 MiB pages the
# move of a 2.2 GB model took 0.3 s instead of 1.0 s, and six copies of it ran within 2.3% of each
# other instead of 5%. THP_MEM_ALLOC_ENABLE=0 in the environment turns it off.
export THP_MEM_ALLOC_ENABLE="${THP_MEM_ALLOC_ENABLE-1}"
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
