PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0

.PHONY: demo test lint format install dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[onnx,serve]'
	touch $@

$(VENV)/.dev: $(VENV)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev

DEMO := runs/demo

# The main job on the embedded default: split the shipped arXiv data 80/20, train, evaluate on the
# unseen 20%, export ONNX (fp32, int8) and record the fastest faithful engine, write a submission
# file with it and show a few predictions.
demo: install
	$(BIN)/python examples/split_data.py data/arxiv_topics.csv.gz $(DEMO)/data
	$(BIN)/mlabel train $(DEMO)/data/train.csv --text-cols TITLE ABSTRACT --epochs 1 --max-len 128 --out $(DEMO)
	$(BIN)/mlabel evaluate $(DEMO)/model $(DEMO)/data/test.csv
	$(BIN)/mlabel export $(DEMO)/model --onnx --int8 --sample $(DEMO)/data/test.csv --sample-rows 128
	$(BIN)/mlabel predict $(DEMO)/model $(DEMO)/data/test.csv -o $(DEMO)/predictions.csv
	$(BIN)/mlabel predict $(DEMO)/model $(DEMO)/data/test.csv --limit 3

test: dev
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(BIN)/python -m pytest -n 2 --dist loadfile --timeout 600

lint: dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: dev
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(VENV) runs .pytest_cache
