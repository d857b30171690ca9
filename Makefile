# Two commands set everything up on a fresh machine:
#   make run    create .venv, install tinylm, run the default pipeline (tokenizer -> data -> pretrain -> eval -> samples)
#   make test   create .venv, install tinylm with test dependencies (pytest, transformers, lm-eval), run the test suite
# TORCH pins the PyTorch build: the default is the CPU wheel this project is tested with; on a GPU
# machine use e.g. `make run TORCH="torch --index-url https://download.pytorch.org/whl/cu128"`.

PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
ARGS   ?=
BIN    := $(VENV)/bin

.PHONY: run test test-fast bench clean-venv

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev,test]"
	touch $@

$(VENV)/.installed-hf: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev,hf]"
	touch $@

run: $(VENV)/.installed
	$(BIN)/tinylm pipeline $(ARGS)

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: $(VENV)/.installed
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

bench: $(VENV)/.installed-hf
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/vocab_size.py

clean-venv:
	rm -rf $(VENV)
