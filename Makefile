# Two commands set everything up on a fresh machine:
#   make run    create .venv, install tinylm, run the default pipeline:
#               tokenizer -> prepare -> pretrain -> bpb -> sample -> eval (base) -> sft -> ifeval (base, sft) -> eval (sft) -> report -> chat
#   make test   create .venv, install tinylm with every extra (dev, hf, test), run the test suite
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
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

# the tests run with every optional extra installed, so CI catches what only happens with them
# (e.g. `datasets` present but no network); add new extras here as they appear
EXTRAS := dev,hf,test,gguf,track
# extras left out on purpose: llamacpp compiles llama.cpp from source (tens of minutes on 2 cores);
# its parity test is skipped without it (`pip install -e '.[llamacpp]' && pytest -m llamacpp`)
NOT_IN_CI := llamacpp

$(VENV)/.installed-all: $(VENV)/.installed pyproject.toml
	$(BIN)/pip install -q "$(TORCH)" -e ".[$(EXTRAS)]"
	touch $@

run: $(VENV)/.installed
	$(BIN)/tinylm pipeline $(ARGS)

test: $(VENV)/.installed-all
	$(BIN)/python -m pytest -q $(ARGS)

test-fast: $(VENV)/.installed-all
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

bench: $(VENV)/.installed-all
	$(BIN)/python bench/train_throughput.py
	$(BIN)/python bench/vocab_size.py

clean-venv:
	rm -rf $(VENV)
