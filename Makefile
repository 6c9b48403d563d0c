# trainwise: `make demo` trains the digits example, `make test` runs the whole suite.
# Both set everything up on a fresh machine first (a .venv with torch 2.13.0 and the package).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
JOBS   ?= 2

.PHONY: setup system demo test test-fast bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev,export,postgres,tensorboard,mlflow,ray,wandb]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

# System packages the tests use for real (a headless browser for the HTML pages, PostgreSQL for search).
system:
	bash scripts/setup-system.sh

demo: setup
	$(BIN)/trainwise train examples/digits.yaml

test: setup system
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile --no-loadscope-reorder

test-fast: setup
	$(BIN)/python -m pytest -q -n $(JOBS) --dist loadfile -m "not slow"

bench: setup
	$(BIN)/python -m pip install --quiet -r benchmarks/requirements.txt
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache
