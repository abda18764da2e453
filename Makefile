# Entry points: `make test` runs everything CI runs; `make smoke` runs the main
# job on the embedded default inventory (this machine) without a GPU.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

help: ## List targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/ansible-playbook: requirements.txt
	@# Debian's python3.11 has no venv/ensurepip until python3-venv is installed.
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

setup: $(BIN)/ansible-playbook ## Create .venv with the pinned controller toolchain

lint: setup ## ansible-lint (production profile), yamllint, ruff
	$(BIN)/yamllint --strict .
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --profile production

unit: setup ## Unit tests (no Docker needed)
	$(BIN)/pytest -q tests/unit tests/scoring

lab: setup ## Docker Engine running + local base images (idempotent)
	bash tests/lab/lab.sh

image: lab ## Build the evaluation image from docker/ and run its verify
	bash tests/lab/build-image.sh

molecule: image ## molecule test (default scenario)
	bash tests/lab/molecule-test.sh

# The e2e tests mostly wait on Ansible and containers: two run at a time, each test module on
# one worker (its module fixtures make a run once). site.yml on this machine reconfigures the
# Docker Engine that the others' containers run on, so it runs alone, after them.
E2E_WORKERS ?= 2
e2e: image ## End-to-end tests through ansible-runner
	$(BIN)/pytest -q --durations=25 -n $(E2E_WORKERS) --dist loadfile -m "not serial" tests/e2e
	$(BIN)/pytest -q --durations=10 -m serial tests/e2e

test: lint unit lab image molecule e2e ## Everything CI runs

smoke: image ## The main job on this machine, no GPU: provision, then smoke-run the matrix
	$(BIN)/ansible-playbook site.yml
	$(BIN)/ansible-playbook eval.yml -e smoke=true -e limit=10

.PHONY: help setup lint unit lab image molecule e2e test smoke
