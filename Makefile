# The two commands of the README: `make repro` and `make test`. Each creates .venv if missing,
# installs the pinned dependencies, and runs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# Offline hygiene: no telemetry or update checks from the tools the pipeline uses.
export PATH := $(abspath $(BIN)):$(PATH)
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1

.PHONY: repro test bench lint lock clean-venv

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		-c requirements.lock -e '.[test]'
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/warp.py

lint: $(STAMP)
	$(BIN)/ruff check cocosnet stages tests bench

clean-venv:
	rm -rf $(VENV)

lock: $(STAMP)
	(echo "# Pinned versions of every dependency (pip constraints). Regenerate: make lock"; \
	 $(BIN)/python -m pip freeze --exclude-editable | grep -v '^cocosnet') > requirements.lock
