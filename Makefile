# The two commands of the README: `make run` and `make test`. Both create .venv and install on first use.
# `make faults` runs the long tests left out of `make test`: hostile input (fuzzing, schemathesis) and injected faults.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test faults install clean

$(STAMP): pyproject.toml scripts/bootstrap_venv.py
	$(PYTHON) scripts/bootstrap_venv.py $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/centrala migrate
	$(BIN)/centrala seed --if-empty
	$(BIN)/centrala up

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

faults: $(STAMP)
	$(BIN)/python -m pytest -m faults -o timeout=3600 $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) var/test-runs
