# Two entry points: `make demo` (the main job) and `make test`. Each creates .venv and installs
# what it needs; the venv is rebuilt only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
BIN := $(VENV)/bin
DEMO ?= examples/demo.dfm

.PHONY: demo test lint bench bench-gpu bench-long clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

# table, plot and motion preview always (seconds, no model); then the few-step render if the model is
# reachable (a GPU at once; a CPU after an estimate of how long it takes); offline, one line says how
demo: $(STAMP)
	$(BIN)/dfm demo $(DEMO) --out outputs/demo

test: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_check.py
	$(BIN)/python benchmarks/bench_compile.py
	$(BIN)/python benchmarks/bench_render.py
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/bench_gpu.py --cpu-smoke
	$(BIN)/python benchmarks/bench_stages.py --check
	$(BIN)/python benchmarks/bench_fewstep.py --cpu-smoke
	$(BIN)/python benchmarks/bench_lsp.py
	$(BIN)/python benchmarks/bench_checkpoints.py
	$(BIN)/python benchmarks/bench_lora.py

# longer campaigns and scale-out figures (minutes each)
bench-long: $(STAMP)
	$(BIN)/python benchmarks/fuzz_campaign.py
	$(BIN)/python benchmarks/bench_batch.py

# SD1.5-sized random models at 512² fp16 against a naive diffusers loop (a CUDA GPU; no internet needed)
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu.py

clean:
	rm -rf $(VENV) build *.egg-info  # never outputs/: it holds the user's renders
