#!/usr/bin/env bash
# Determinism: the default suite twice on this machine, the second time in a random order (seed
# printed), then `lora-parity agree` on the two runs: same tests, same outcomes, same numbers.
# Usage: [REPEAT_OUT=DIR] [REPEAT_SEED=N] tools/repeat.sh [pytest args...]
#        (REPEAT_OUT default: a new run folder under reports/repeat/)
# Exit: non-zero if either run failed or the runs disagree.
set -uo pipefail
PYTHON=${PYTHON:-python}
# A new run folder (reports/repeat/<UTC time>-<id>/, `latest` points at it), or REPEAT_OUT if it is
# new or empty: a repeat never overwrites another one's runs.
if [ -n "${REPEAT_OUT:-}" ]; then
  OUT=$("$PYTHON" -m parity.cli runs claim "$REPEAT_OUT" --produces run1,run2 --command "tools/repeat.sh $*") || exit 2
else
  OUT=$("$PYTHON" -m parity.cli runs new reports/repeat --command "tools/repeat.sh $*") || exit 2
fi
SEED=${REPEAT_SEED:-$((RANDOM * 32768 + RANDOM))}
run() {
  local name=$1
  shift
  "$PYTHON" -m pytest -n "${JOBS:-2}" --dist loadgroup -m "not slow" \
    --junitxml="$OUT/$name/junit.xml" --parity-report="$OUT/$name/parity" "$@"
}
run run1 "$@"
rc1=$?
# The same seed in every xdist worker, so all of them collect the same shuffled order. Modules are
# shuffled and so are the tests inside each; a global shuffle would rebuild every module-scoped
# model for nearly every test, hours instead of minutes.
run run2 --random-order-bucket=module --random-order-seed="$SEED" "$@"
rc2=$?
"$PYTHON" -m parity.cli agree "$OUT/run1" "$OUT/run2"
rc3=$?
echo "run1 (file order): exit $rc1; run2 (random order, seed $SEED): exit $rc2; agree: exit $rc3"
[ "$rc1" -eq 0 ] && [ "$rc2" -eq 0 ] && [ "$rc3" -eq 0 ]
