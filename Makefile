# Two entry points: `make demo` (the main job) and `make test`. `make demo` creates .venv with dfm and
# what it needs to run; `make test` adds the test tools and Ray (the extras `test` and `ray`) to the same
# venv. Each stamp is redone only when pyproject.toml changes, so neither target reinstalls the other's.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
BIN := $(VENV)/bin
# -qq: pip prints its errors only; its progress and the build backend's notes (setuptools' "Editable
# installation" box at each `-e .`) are walls that read as a broken install
PIP := $(BIN)/python -m pip -qq
DEMO ?= examples/demo.dfm

.PHONY: demo test lint bench bench-gpu bench-long clean

$(STAMP): pyproject.toml
	@echo "Installing dfm into $(VENV) (a few minutes the first time: PyTorch alone is a few GB)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(PIP) install --upgrade pip
	@$(PIP) install -e .
	@touch $@

$(TEST_STAMP): $(STAMP)
	@echo "Adding the test tools, Ray and the ControlNet preprocessors to $(VENV) (pip install -e '.[test,ray,controlnet]')"
	@$(PIP) install -e '.[test,ray,controlnet]'
	@touch $@

# table, plot and motion preview always (seconds, no model); then the few-step render if the model is
# reachable (a GPU at once; a CPU after a countdown, the render measuring how long it takes); offline, one
# line says how
demo: $(STAMP)
	$(BIN)/dfm demo $(DEMO) --out outputs/demo
	@echo "To run dfm yourself: '. $(VENV)/bin/activate' puts it on the PATH (then 'dfm --help'), or run $(BIN)/dfm"

# the browser tests of `dfm studio` (tests/test_studio_browser.py) drive Debian's chromium through Playwright
CHROMIUM := /usr/bin/chromium

test: $(TEST_STAMP)
	@test -x $(CHROMIUM) || if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "Installing chromium for the browser tests (apt-get install chromium)"; \
		apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }; \
	else echo "The browser tests need $(CHROMIUM): install Debian's chromium package (sudo apt-get install chromium)"; fi
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench: $(TEST_STAMP)
	$(BIN)/python benchmarks/bench_check.py
	$(BIN)/python benchmarks/bench_compile.py
	$(BIN)/python benchmarks/bench_render.py
	$(BIN)/python benchmarks/bench_startup.py
	$(BIN)/python benchmarks/bench_gpu.py --cpu-smoke
	$(BIN)/python benchmarks/bench_stages.py --check
	$(BIN)/python benchmarks/bench_fewstep.py --cpu-smoke
	$(BIN)/python benchmarks/bench_lsp.py
	$(BIN)/python benchmarks/bench_flow.py
	$(BIN)/python benchmarks/bench_interpolate.py
	$(BIN)/python benchmarks/bench_upscale.py
	$(BIN)/python benchmarks/bench_studio.py
	$(BIN)/python benchmarks/bench_checkpoints.py
	$(BIN)/python benchmarks/bench_lora.py

# longer campaigns and scale-out figures (minutes each)
bench-long: $(TEST_STAMP)
	$(BIN)/python benchmarks/fuzz_campaign.py
	$(BIN)/python benchmarks/bench_batch.py

# SD1.5-sized random models at 512² fp16 against a naive diffusers loop (a CUDA GPU; no internet needed)
bench-gpu: $(STAMP)
	$(BIN)/python benchmarks/bench_gpu.py

clean:
	rm -rf $(VENV) build *.egg-info  # never outputs/: it holds the user's renders
