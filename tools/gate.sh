#!/usr/bin/env bash
# Fill one results bundle for upgrade gating (parity/runs/gate.py says what a bundle holds), and give the verdict.
#
#   tools/gate.sh old [BUNDLE]            parity checks, golden images rendered into BUNDLE/golden, benchmarks;
#                                         default BUNDLE: old/ in a new run folder reports/gate/<UTC time>-<id>/
#                                         (reports/gate/latest points at it)
#   tools/gate.sh new [BUNDLE OLD_BUNDLE] the same checks, golden images verified against OLD_BUNDLE/golden;
#                                         default: new/ beside old/ in reports/gate/latest
#   tools/gate.sh verdict                 lora-parity gate on reports/gate/latest/{old,new}, gate.md and
#                                         gate.html beside them; exits with its status
#
# An explicit BUNDLE that already holds anything is refused unless GATE_OVERWRITE=1: a second gate
# never overwrites the first (each default run gets its own folder).
# Extra pytest arguments: GATE_ARGS (both runs, e.g. "--family sd15"), GATE_BENCH_ARGS (the benchmarks;
# default: float32 denoiser forwards, eager modes: a minute on a CPU). old/new exit 0 when the bundle was
# written, whatever the checks found: the verdict is `lora-parity gate OLD NEW`'s to give.
set -uo pipefail
USAGE="usage: tools/gate.sh old [BUNDLE] | new [BUNDLE OLD_BUNDLE] | verdict"
ROLE=${1:?$USAGE}
PY=${PYTHON:-python}
JOBS=${JOBS:-2}
ROOT=reports/gate
latest() { "$PY" -m parity.cli runs latest "$ROOT"; }
case "$ROLE" in
    old) if [ $# -ge 2 ]; then B=$2; else RUN=$("$PY" -m parity.cli runs new "$ROOT" --command "tools/gate.sh $*") || exit 2; B=$RUN/old; fi
         GOLDEN=(--update-golden --golden-dir "$B/golden") ;;
    new) if [ $# -ge 3 ]; then B=$2; OLD=$3
         elif [ $# -eq 1 ]; then RUN=$(latest) || exit 2; B=$RUN/new; OLD=$RUN/old
         else echo "gate: $USAGE" >&2; exit 2; fi
         [ -f "$OLD/bundle.json" ] || { echo "gate: $OLD: not a results bundle (no bundle.json)" >&2; exit 2; }
         # a case the old versions rendered no image for (a family they cannot build) is skipped, not failed
         GOLDEN=(--golden-dir "$OLD/golden" --golden-missing skip) ;;
    verdict) RUN=$(latest) || exit 2
         exec "$PY" -m parity.cli gate "$RUN/old" "$RUN/new" --out "$RUN" ;;
    *) echo "gate: role must be old, new or verdict, not $ROLE" >&2; exit 2 ;;
esac
overwrite=()
[ "${GATE_OVERWRITE:-}" = 1 ] && overwrite=(--overwrite)
"$PY" -m parity.cli runs claim "$B" --flag GATE_OVERWRITE=1 --command "tools/gate.sh $*" ${overwrite[@]+"${overwrite[@]}"} >/dev/null || exit 2
mkdir -p "$B/bench"
"$PY" -m parity.cli runs bundle "$B" "$ROLE" || exit 2
echo "gate: $ROLE bundle $B: parity checks"
# shellcheck disable=SC2086
"$PY" -m pytest tests -n "$JOBS" --dist loadgroup -m "not slow" --ignore=tests/harness -q -p no:randomly \
    --junitxml="$B/junit.xml" --parity-report="$B/parity" --golden-report="$B/golden-report" "${GOLDEN[@]}" \
    ${GATE_ARGS:-}
echo "gate: $ROLE bundle $B: benchmarks"
# shellcheck disable=SC2086
"$PY" -m pytest benchmarks -n 0 -q -p no:randomly --benchmark-enable --benchmark-json="$B/bench/run.json" \
    ${GATE_BENCH_ARGS:--k "float32 and forward and not compiled"} ${GATE_ARGS:-}
[ -s "$B/junit.xml" ] && [ -s "$B/parity/summary.json" ] || { echo "gate: $B is incomplete" >&2; exit 2; }
echo "gate: wrote $B"
