# The two commands a new user types: `make parity` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
JOBS ?= 2
# loadgroup: a compiled hotswap session stays on one worker, so it compiles once.
PYTEST = $(VENV)/bin/python -m pytest --dist loadgroup
STAMP = $(VENV)/.lora-parity-installed

.PHONY: install parity test slow gpu bench gate clean

$(STAMP): pyproject.toml tools/bootstrap.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash tools/bootstrap.sh
	touch $(STAMP)

install: $(STAMP)

# The parity checks on the built-in tiny models; JUnit XML + a readable summary in reports/parity/.
parity: $(STAMP)
	$(PYTEST) tests -n $(JOBS) -m "not slow" --ignore=tests/harness \
		--junitxml=reports/parity/junit.xml --parity-report=reports/parity $(ARGS)
	@echo "summary: reports/parity/summary.md"

# Everything that runs by default: parity checks, the harness's own tests, benchmark smoke runs.
test: $(STAMP)
	$(PYTEST) -n $(JOBS) -m "not slow" $(ARGS)

# Timed benchmarks (tiny zoo on this machine's device), then reports/bench/{run.json,index.html,report.md}.
# On a GPU: make bench ARGS="--device cuda --bench-size full".
bench: $(STAMP)
	PYTHON=$(VENV)/bin/python bash tools/bench.sh $(ARGS)

# Upgrade gate: old vs new diffusers/peft (tox.ini names the versions), one verdict in reports/gate/.
gate: $(STAMP)
	$(VENV)/bin/tox -e gate-old,gate-new

slow: $(STAMP)
	$(PYTEST) -n $(JOBS) -m slow $(ARGS)

# On a GPU machine: every check on CUDA, hotswap with inductor (CUDA graphs: ARGS="--compile-mode reduce-overhead").
# With several GPUs, GPU_JOBS=N runs N workers, each pinned to its own device.
GPU_JOBS ?= 1
gpu: $(STAMP)
	$(PYTEST) -n $(GPU_JOBS) --device cuda --compile-backend inductor $(ARGS)

clean:
	rm -rf $(VENV) reports .pytest_cache .hypothesis
