#!/usr/bin/env bash
# The parity checks on the tiny zoo (or your --model-path / --lora), JUnit XML and the readable summary
# in a new run folder reports/parity/<UTC time>-<id>/ (reports/parity/latest points at the newest), so a
# second run never overwrites the first. Used by `make parity` and `tox -e parity`; extra arguments go
# to pytest. Exits with pytest's status.
set -uo pipefail
PY=${PYTHON:-python}
JOBS=${JOBS:-2}
OUT=$("$PY" -m parity.cli runs new reports/parity --command "tools/parity.sh $*") || exit 2
# loadgroup: a compiled hotswap session stays on one worker, so it compiles once.
"$PY" -m pytest tests -n "$JOBS" --dist loadgroup -m "not slow" --ignore=tests/harness \
    --junitxml="$OUT/junit.xml" --parity-report="$OUT" "$@"
status=$?
echo "summary: $OUT/summary.md ($OUT/summary.html)"
exit $status
