# OpenWIT: `make help` lists the targets. Every stage target resumes: rerun it after a kill.
#
#   make demo                       the whole chain on the sandbox web, then the report
#   make crawl [SEEDS=file]         crawl the sandbox web, or real sites from a seeds file
#   make crawl URLS=file.parquet    take candidates from an img2dataset-style URL list
#   make crawl WAT='dir/*.wat.gz'   take them from Common Crawl WAT files: a file, folder, glob
#                                   or paths file (wat.paths.gz); WARC=... for WARC files
#   make shards                     curate the candidates, fetch images, write shards
#   make shards RETRY_FAILED=1      refetch only the images an earlier run failed to download
#   make download URLS=f OUT=dir    img2dataset's command on our machinery (ARGS_I2D="--flag v")
#   make train [NPROC=2]            train CLIP on the shards (torchrun when NPROC > 1)
#   make browse                     page through the shards in a web browser
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
.PHONY: help venv pillow-simd demo crawl curate shards download train report browse test lint typecheck bench ablation serve clean queries worldwide-lists faults

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# The CPU build of torch first: an open range would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev]"
	$(MAKE) --no-print-directory pillow-simd || echo "warning: Pillow-SIMD could not be built; Pillow stays (images resize several times slower)" >&2
	touch $@

# Pillow-SIMD is Pillow (the same `PIL`, the same API) with SIMD resampling: resizing, the
# largest cost of a downloaded image, runs ~7x faster. PyPI has it as source only, so it is
# built here: a C compiler and the jpeg, zlib, lcms2, webp and tiff headers (Debian:
# libjpeg-dev zlib1g-dev liblcms2-dev libwebp-dev libtiff-dev), with AVX2 where the CPU has
# it. It replaces Pillow only once built with every codec the project reads; else Pillow stays.
# Resized pixels can differ by one level between the two: outputs are identical for one install.
PILLOW_SIMD ?= pillow-simd==12.1.1.post0
PILLOW_CODECS := jpg zlib littlecms2 webp libtiff
pillow-simd: ## build Pillow-SIMD and put it in .venv in place of Pillow (make venv does)
	rm -rf $(VENV)/.pillow-simd
	CC="cc $$(grep -qw avx2 /proc/cpuinfo 2>/dev/null && echo -mavx2)" \
	    $(BIN)/pip wheel -q --no-deps -w $(VENV)/.pillow-simd "$(PILLOW_SIMD)"
	pillow=$$($(BIN)/python -c "import PIL; print(PIL.__version__)") && \
	$(BIN)/pip uninstall -q -y pillow && \
	$(BIN)/pip install -q --no-deps --force-reinstall $(VENV)/.pillow-simd/*.whl && \
	$(BIN)/python -c "import sys; from PIL import features as f; \
	    missing = [c for c in '$(PILLOW_CODECS)'.split() if not f.check(c)]; \
	    sys.exit('Pillow-SIMD was built without ' + ', '.join(missing) if missing else None)" \
	  || { $(BIN)/pip uninstall -q -y pillow-simd; $(BIN)/pip install -q "pillow==$$pillow"; exit 1; }

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

OUT ?= images
ARGS_I2D ?=
download: venv ## img2dataset's command: URLS=list OUT=folder ARGS_I2D="--input_format parquet ..."
	$(RUN) download --url_list $(URLS) --output_folder $(OUT) $(ARGS_I2D) \
	    $(if $(CONFIG),--config $(CONFIG)) $(foreach s,$(SET),--set $(call quote,$(s)))

report: venv ## print the report of WORKDIR and write its report.html (plots, gallery)
	$(RUN) report $(ARGS)

browse: venv ## browse the shards of WORKDIR in a web browser, on 127.0.0.1:8000
	$(BIN)/python -m shards browse $(WORKDIR)/shards

serve: venv ## serve the sandbox web on loopback until Ctrl-C
	$(BIN)/python -m sandbox serve

test: venv ## run the test suite
	$(BIN)/pytest -q

lint: venv ## ruff (lint and format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The fault suite whole: the hostile site, kill -9 at several seeded points of every stage,
# a full disk; it prints, for each fault, what was injected, what survived, what was lost,
# peak memory and time. `make test` runs its fast part only.
faults: venv ## the fault-injection suite, long runs included, with its table of outcomes
	$(BIN)/pytest -q tests/faults -m "faults or not faults"

bench: venv ## benchmarks against the peers (img2dataset, MetaCLIP, langdetect, warcio, DuckDB...)
	$(BIN)/python -m bench

ablation: venv ## balanced vs unbalanced curation, same seed and steps, beside MetaCLIP's figures
	$(BIN)/python -m bench.train_ablation $(foreach s,$(SET),--set $(call quote,$(s)))

# The shipped English query list, rebuilt from the vocabulary files in ../shared/data
# (Wikipedia words >= 100, wordfreq's words at the same rate, PMI bigrams of the real alt
# texts, WordNet names); SHARED=folder points elsewhere.
SHARED ?= ../shared/data
queries: venv ## rebuild the shipped query list filters/querylists/en.txt.gz (SHARED=data folder)
	$(BIN)/python -m filters.queries build --out filters/querylists/en.txt.gz \
	  --wiki-counts $(SHARED)/vocab/wikiwords-0.5-enwiki2012-unigram-counts.tsv.gz \
	  --wordfreq en --corpus $(SHARED)/alt_text/img2dataset-test_10000.parquet \
	  --wordnet $(SHARED)/vocab/wordnet-3.0-synset-first-lemma-names.txt.gz

# The shipped per-language entry lists of worldwide curation (wordfreq's most frequent
# words of each spaced language, each also capitalised).
worldwide-lists: venv ## rebuild filters/querylists/worldwide/<lang>.txt.gz from wordfreq
	$(BIN)/python -m filters.worldwide build --out filters/querylists/worldwide

clean: ## remove run folders (keeps .venv)
	rm -rf runs
