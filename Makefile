# The two commands a new user types: `make parity` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
JOBS ?= 2
# loadgroup: a compiled hotswap session stays on one worker, so it compiles once.
PYTEST = $(VENV)/bin/python -m pytest --dist loadgroup
STAMP = $(VENV)/.lora-parity-installed

.PHONY: install parity test slow gpu bench gate matrix repeat clean

$(STAMP): pyproject.toml tools/bootstrap.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash tools/bootstrap.sh
	touch $(STAMP)

install: $(STAMP)

# Outputs never overwrite a previous run's: each run gets a new folder reports/<kind>/<UTC time>-<id>/
# and reports/<kind>/latest points at the newest (parity/runs/folders.py).

# The parity checks on the built-in tiny models; JUnit XML + a readable summary in reports/parity/latest/.
parity: $(STAMP)
	PYTHON=$(VENV)/bin/python JOBS=$(JOBS) bash tools/parity.sh $(ARGS)

# Everything that runs by default: parity checks, the harness's own tests, benchmark smoke runs.
test: $(STAMP)
	$(PYTEST) -n $(JOBS) -m "not slow" $(ARGS)

# Timed benchmarks (tiny zoo on this machine's device), then reports/bench/latest/{run.json,index.html,report.md}.
# On a GPU: make bench ARGS="--device cuda --bench-size full".
bench: $(STAMP)
	PYTHON=$(VENV)/bin/python bash tools/bench.sh $(ARGS)

# Upgrade gate: old vs new diffusers/peft (tox.ini names the versions), one verdict in reports/gate/latest/.
gate: $(STAMP)
	$(VENV)/bin/tox -e gate-old,gate-new

# Compatibility matrix: every family x layout's merge, unfuse and hotswap under the last 8 diffusers releases
# (each with the peft/transformers of its day), each in its own cached venv; reports/matrix/latest/matrix.html.
# ARGS="--set diffusers==0.37.1,peft==0.18.1 --family sd15" narrows it; docs/matrix.md says more.
matrix: $(STAMP)
	$(VENV)/bin/python -m parity.cli matrix $(ARGS)

# Determinism: the default suite twice (the second in random order); the runs must agree exactly.
repeat: $(STAMP)
	PYTHON=$(VENV)/bin/python JOBS=$(JOBS) bash tools/repeat.sh $(ARGS)

slow: $(STAMP)
	$(PYTEST) -n $(JOBS) -m slow $(ARGS)

# On a GPU machine: every check on CUDA, hotswap with inductor (CUDA graphs: ARGS="--compile-mode reduce-overhead").
# With several GPUs, GPU_JOBS=N runs N workers, each pinned to its own device.
GPU_JOBS ?= 1
gpu: $(STAMP)
	$(PYTEST) -n $(GPU_JOBS) --device cuda --compile-backend inductor $(ARGS)

clean:
	rm -rf $(VENV) reports .pytest_cache .hypothesis
