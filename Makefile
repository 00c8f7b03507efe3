# The two commands a new user types: `make parity` and `make test`. Both create .venv first.
PYTHON ?= python3
VENV ?= .venv
JOBS ?= 2
PYTEST = $(VENV)/bin/python -m pytest
STAMP = $(VENV)/.lora-parity-installed

.PHONY: install parity test slow clean

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

slow: $(STAMP)
	$(PYTEST) -n $(JOBS) -m slow $(ARGS)

clean:
	rm -rf $(VENV) reports .pytest_cache .hypothesis
