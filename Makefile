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
export MLFLOW_DISABLE_TELEMETRY := true
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: repro test test-slow bench bench-inference bench-concurrency lint lock clean-venv ui test-ui plots flow pictures screenshots chromium

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# Retried: a download corrupted in transit fails pip's hash check (seen once in CI).
	for try in 1 2 3; do \
		$(BIN)/python -m pip install --quiet --disable-pip-version-check \
			-c requirements.lock -e '.[test]' && break; \
		test $$try -lt 3 || exit 1; echo "pip install failed; retrying ($$try/3)" >&2; sleep 5; \
	done
	touch $(STAMP)

repro: $(STAMP)
	$(BIN)/dvc repro

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Slow tests that need no browser (e.g. torch.compile against eager).
test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow --ignore tests/test_mlflow_ui.py \
		--ignore tests/test_webdemo.py

bench: $(STAMP)
	$(BIN)/python bench/warp.py

# The demo training step alone, then 2 and 4 processes at once, with and without the thread
# budget (~5 min on 2 CPU cores): bench/results/concurrency.json
bench-concurrency: $(STAMP)
	$(BIN)/python bench/concurrency.py

# End-to-end inference of the paper model, naive float32 vs the optimised runtimes with the
# exact cuts (~20 min on 2 CPU cores): bench/results/inference_cuts.json
bench-inference: $(STAMP)
	$(BIN)/python bench/inference.py --batch 1 8 --trained models/demo/export \
		--variants baseline fused gram bf16_cl bf16_cl_gram --out bench/results/inference_cuts.json

lint: $(STAMP)
	$(BIN)/ruff check cocosnet stages tests bench pipeline
	$(BIN)/lint-imports

# DVC plots and metrics as an offline page (inline SVG, no CDN): dvc_plots/index.html
plots: $(STAMP)
	$(BIN)/cocosnet plots --out dvc_plots

# The DVC DAG through Prefect (one task per stage, retries, independent stages concurrently)
flow: $(STAMP)
	$(BIN)/python -m pipeline.flows repro

# MLflow UI over the repo's runs, on loopback only: http://127.0.0.1:$(UI_PORT). One worker and
# no job runner (MLflow would start a huey consumer for GenAI jobs) keep it lean. MLflow counts
# DO_NOT_TRACK only when it is "true", so its telemetry is switched off by its own variable.
UI_PORT ?= 5000
ui: $(STAMP)
	MLFLOW_DISABLE_TELEMETRY=true MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath mlflow.db) \
		--default-artifact-root file://$(abspath mlruns) \
		--host 127.0.0.1 --port $(UI_PORT) --workers 1

# Browser tests of the MLflow UI and the web demo in headless Chromium (Debian's chromium and
# chromium-driver, installed when missing). They write no tracked file.
test-ui: chromium
	$(BIN)/python -m pytest -q -m slow tests/test_mlflow_ui.py tests/test_webdemo.py

# The README's pictures of the trained demo model (docs/demo.png, edit.png, makeup.png,
# correspond.png; after make repro, about 20 s on 2 CPU cores, no browser).
pictures: $(STAMP)
	$(BIN)/python docs/pictures.py

# The README's MLflow and web demo screenshots, from this repo's own runs (after make repro),
# and its pictures.
screenshots: chromium pictures
	$(BIN)/python docs/mlflow_screenshot.py
	$(BIN)/python docs/webdemo_screenshot.py

chromium: $(STAMP)
	test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || { \
		if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
		$$sudo apt-get update -qq && \
		$$sudo env DEBIAN_FRONTEND=noninteractive \
			apt-get install -y --no-install-recommends chromium chromium-driver; }

clean-venv:
	rm -rf $(VENV)

lock: $(STAMP)
	(echo "# Pinned versions of every dependency (pip constraints). Regenerate: make lock"; \
	 $(BIN)/python -m pip freeze --exclude-editable | grep -v '^cocosnet') > requirements.lock
