#!/usr/bin/env bash
# Fill one results bundle for upgrade gating (parity/gate.py says what a bundle holds).
#
#   tools/gate.sh old BUNDLE            parity checks, golden images rendered into BUNDLE/golden, benchmarks
#   tools/gate.sh new BUNDLE OLD_BUNDLE the same checks, golden images verified against OLD_BUNDLE/golden
#
# Extra pytest arguments: GATE_ARGS (both runs, e.g. "--family sd15"), GATE_BENCH_ARGS (the benchmarks;
# default: float32 denoiser forwards, eager modes: a minute on a CPU). Exits 0 when the bundle was written, whatever
# the checks found: the verdict is `lora-parity gate OLD NEW`'s to give.
set -uo pipefail
ROLE=${1:?usage: tools/gate.sh old|new BUNDLE [OLD_BUNDLE]}
B=${2:?usage: tools/gate.sh old|new BUNDLE [OLD_BUNDLE]}
PY=${PYTHON:-python}
JOBS=${JOBS:-2}
case "$ROLE" in
    old) GOLDEN=(--update-golden --golden-dir "$B/golden") ;;
    new) OLD=${3:?tools/gate.sh new needs the old bundle}
         [ -f "$OLD/bundle.json" ] || { echo "gate: $OLD: not a results bundle (no bundle.json)" >&2; exit 2; }
         GOLDEN=(--golden-dir "$OLD/golden") ;;
    *) echo "gate: role must be old or new, not $ROLE" >&2; exit 2 ;;
esac
rm -rf "$B" && mkdir -p "$B/bench"
"$PY" -c "import sys; from parity.gate import write_manifest; write_manifest(sys.argv[1], sys.argv[2])" "$B" "$ROLE" || exit 2
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
