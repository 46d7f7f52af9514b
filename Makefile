# OpenWIT: `make help` lists the targets. Every stage target resumes: rerun it after a kill.
#
#   make demo                       the whole chain on the sandbox web, then the report
#   make crawl [SEEDS=file]         crawl the sandbox web, or real sites from a seeds file
#   make crawl URLS=file.parquet    take candidates from an img2dataset-style URL list
#   make crawl WAT='dir/*.wat.gz'   take them from Common Crawl WAT files: a file, folder, glob
#                                   or paths file (wat.paths.gz); WARC=... for WARC files
#   make shards                     curate the candidates, fetch images, write shards
#   make shards RETRY_FAILED=1      refetch only the images an earlier run failed to download
#   make train [NPROC=2]            train CLIP on the shards (torchrun when NPROC > 1)
#
# Each stage target runs the ones before it first (a finished stage is skipped at once).
# Knobs: CONFIG=file.toml, WORKDIR=runs/name (or s3://bucket/run), EXECUTOR=ray,
# RAY_ADDRESS=host:port, SET="crawl.max_pages=100 train.epochs=2" (no spaces inside a value:
# SET='curate.languages=["en","de"]').

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
SEEDS ?=
URLS ?=
WAT ?=
WARC ?=
EXECUTOR ?=
RAY_ADDRESS ?=
RETRY_FAILED ?=
# A new run without seeds is the sandbox demo, with the settings of configs/demo.toml; a run
# folder that has a config.toml continues with it (the CLI loads it when CONFIG is empty).
CONFIG ?= $(if $(SEEDS)$(URLS)$(WAT)$(WARC)$(wildcard $(WORKDIR)/config.toml),,configs/demo.toml)
SET ?=
NPROC ?= 1
# Each SET word is single-quoted for the shell, so TOML strings keep their double quotes.
quote = '$(subst ','\'',$(1))'
ARGS := $(if $(CONFIG),--config $(CONFIG)) --workdir $(WORKDIR) \
        $(if $(SEEDS),--seeds $(SEEDS)) $(if $(URLS),--url-list $(URLS)) \
        $(if $(WAT),--wat $(call quote,$(WAT))) $(if $(WARC),--warc $(call quote,$(WARC))) \
        $(if $(EXECUTOR),--executor $(EXECUTOR)) $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS)) \
        $(foreach s,$(SET),--set $(call quote,$(s)))
RUN := $(BIN)/python -m pipeline

.DEFAULT_GOAL := help
.PHONY: help venv demo crawl curate shards train report test lint typecheck bench serve clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: an open range would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(BIN)/.installed ## create .venv and install the project (torch CPU first)

demo: venv ## crawl, curate, shard and train on the sandbox web, then print the report
	$(RUN) demo $(ARGS)

crawl: venv ## collect candidate pairs (sandbox web; SEEDS=file for real sites; URLS=list; WAT/WARC=files)
	$(RUN) crawl $(ARGS)

curate: crawl ## text rules, dedup, query matching, language, balancing
	$(RUN) curate $(ARGS)

shards: curate ## fetch the selected images and write webdataset shards (RETRY_FAILED=1)
	$(RUN) shards $(ARGS) $(if $(RETRY_FAILED),--retry-failed)

train: shards ## train CLIP on the shards (NPROC=2 runs torchrun with 2 processes)
ifeq ($(NPROC),1)
	$(RUN) train $(ARGS)
else
	$(BIN)/torchrun --standalone --nproc_per_node $(NPROC) -m pipeline train $(ARGS)
endif

report: venv ## print the report of WORKDIR
	$(RUN) report $(ARGS)

serve: venv ## serve the sandbox web on loopback until Ctrl-C
	$(BIN)/python -m sandbox serve

test: venv ## run the test suite
	$(BIN)/pytest -q

lint: venv ## ruff (lint and format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: venv ## benchmarks against the peers (img2dataset, MetaCLIP, langdetect, warcio, DuckDB...)
	$(BIN)/python -m bench

clean: ## remove run folders (keeps .venv)
	rm -rf runs
