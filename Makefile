# Two commands set everything up on a fresh machine: `make run` and `make test`.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cksum requirements.txt | cut -d' ' -f1)
PORT   ?= 8501
STORE  ?= data/cache/tandem.duckdb

.PHONY: install run test demo demo-mri screenshots lint bench clean

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check -q -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

run: install  ## start the dashboard (Home offers to build the demo study)
	$(VENV)/bin/streamlit run app.py --server.headless true --server.port $(PORT)

test: install  ## lint, then the test suite (the browser tests need Debian's chromium: no silent skips)
	@command -v chromium >/dev/null 2>&1 || [ -n "$$TANDEM_SKIP_BROWSER" ] || { \
	  echo "make test: the browser tests need Debian's chromium. Install it: sudo apt-get install -y chromium"; \
	  echo "           (or run TANDEM_SKIP_BROWSER=1 make test to skip those tests knowingly)"; exit 1; } >&2
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

demo: install  ## build the demo study from the command line
	$(PY) -m recon_core demo --progress-file data/cache/progress.json

demo-mri: install  ## build the MRI demo study (configs/demo-mri.yaml) into the same store
	$(PY) -m recon_core sweep --config configs/demo-mri.yaml --progress-file data/cache/progress.json

screenshots: install  ## refresh docs/screenshots/: every page at 1440 wide, from the demo store (make demo, make demo-mri)
	TANDEM_SKIP_BROWSER= TANDEM_SCREENSHOT_STORE=$(STORE) $(PY) -m pytest -q -p no:cacheprovider \
	  tests/test_browser_screenshots.py::test_every_page_is_photographed_at_1440_wide

lint: install
	$(VENV)/bin/ruff check .

bench: install  ## sweep and training throughput, each against its models' bare work, on the device in use
	$(PY) -m benchmarks.sweep_throughput
	$(PY) -m benchmarks.train_throughput

clean:
	rm -rf data/cache
