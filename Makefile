# vmmesh.mesh: one entry point for humans and CI.
#   make demo   bring up the lab, deploy the shop and run playbooks/site.yml on it
#   make test   lint, unit tests, ansible-test sanity and every molecule scenario
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
PYTHON ?= python3
ALL_SCENARIOS := $(sort $(notdir $(patsubst %/molecule.yml,%,$(wildcard molecule/*/molecule.yml))))
# The scenarios `make test` runs: every one, molecule/default (site.yml end to
# end with drain.yml, upgrade.yml and rotate_ca.yml under load, the longest)
# last. `make molecule SCENARIOS=default` runs one.
SCENARIOS ?= $(filter-out default,$(ALL_SCENARIOS)) default

export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(CURDIR)/lab/containers.conf
export VMMESH_CACHE ?= $(HOME)/.cache/vmmesh
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/.cache/collections
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0

COLLECTION_LINK := .cache/collections/ansible_collections/vmmesh/mesh

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

# --- setup -----------------------------------------------------------------

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the pinned Python dependencies

$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(BIN)/pip install --quiet -r requirements-bench.txt
	touch $@

$(COLLECTION_LINK):
	mkdir -p $(dir $@)
	ln -sfn $(CURDIR) $@

.PHONY: link
link: $(COLLECTION_LINK)

# promtool (tests of the Prometheus rules and configuration) from Debian's
# prometheus package, unpacked into the cache: nothing is installed or started.
PROMTOOL := $(VMMESH_CACHE)/prometheus/usr/bin/promtool
$(PROMTOOL):
	rm -rf $(VMMESH_CACHE)/prometheus.download
	mkdir -p $(VMMESH_CACHE)/prometheus.download
	cd $(VMMESH_CACHE)/prometheus.download && apt-get download prometheus
	rm -rf $(VMMESH_CACHE)/prometheus
	dpkg-deb -x $(VMMESH_CACHE)/prometheus.download/prometheus_*.deb $(VMMESH_CACHE)/prometheus
	rm -rf $(VMMESH_CACHE)/prometheus.download
	$@ --version | head -1

.PHONY: promtool
promtool: $(PROMTOOL) ## Unpack promtool from Debian's prometheus package into $VMMESH_CACHE

.PHONY: lab-prereqs
lab-prereqs: venv ## Build the lab's base image and binaries (cached in $VMMESH_CACHE)
	lab/lab image
	lab/lab binaries

# --- the two commands from the README ----------------------------------------

.PHONY: demo
demo: venv link lab-up ## Bring up the lab, deploy the shop and the whole mesh on it, show requests travelling
	ansible-playbook -i inventories/lab/hosts.yml molecule/default/shop.yml
	ansible-playbook -i inventories/lab/hosts.yml playbooks/site.yml
	ansible-playbook -i inventories/lab/hosts.yml playbooks/render.yml -e mesh_render_dir=$(CURDIR)/.build/demo >/dev/null
	@echo
	lab/lab status
	@echo
	@lab/demo-show .build/demo/plan.json

.PHONY: test
test: lint unit sanity build-check molecule ## Every check: lint, unit, sanity, build, molecule
	@echo "make test: all checks passed"

# --- the checks ----------------------------------------------------------------

.PHONY: lint
lint: venv link ## yamllint, ansible-lint (production profile), ruff, changelog fragments
	yamllint --strict .
	ansible-lint --profile production
	ruff check .
	ruff format --check .
	antsibull-changelog lint

.PHONY: unit
# One worker per core (pytest-xdist); a file's tests stay on one worker, so the
# ports a test file holds are never taken by another file's tests meanwhile.
unit: venv link promtool ## Unit tests (pytest; promtool checks the Prometheus rules)
	pytest -n auto --dist loadfile tests/unit

.PHONY: sanity
sanity: venv ## ansible-test sanity on the collection, without containers
	tests/sanity/run

.PHONY: build-check
build-check: venv ## Build the collection artefact and check what it holds
	rm -rf .build/dist
	ansible-galaxy collection build --force --output-path .build/dist >/dev/null
	$(BIN)/python tests/build/check_artifact.py .build/dist/vmmesh-mesh-*.tar.gz

.PHONY: molecule
molecule: venv link lab-prereqs ## Every molecule scenario, one after another
	for scenario in $(SCENARIOS); do \
	    echo "=== molecule scenario: $$scenario (started $$(date -u +%T))"; \
	    SECONDS=0; \
	    molecule test --scenario-name "$$scenario"; \
	    echo "=== molecule scenario: $$scenario passed in $$((SECONDS / 60)) min $$((SECONDS % 60)) s"; \
	done

.PHONY: bench bench-planner bench-mesh bench-converge
bench: bench-planner bench-mesh bench-converge ## Benchmarks (not part of make test): the compiler, the data path, the converge

bench-planner: venv link ## Benchmark of the mesh compiler (tests/bench/results/planner.json)
	$(BIN)/python tests/bench/planner_bench.py

bench-mesh: venv $(VENV)/.bench-installed link lab-prereqs ## Benchmark of the data path on its own lab (docs/benchmarks/data-path.md)
	$(BIN)/python tests/bench/mesh_bench.py $(BENCH_ARGS)

bench-converge: venv link lab-prereqs ## Benchmark of site.yml on 1, 5 and 20 lab hosts (docs/benchmarks/converge.md)
	$(BIN)/python tests/bench/converge_bench.py $(CONVERGE_ARGS)

# --- the lab ---------------------------------------------------------------------

.PHONY: lab-up lab-down lab-status
lab-up: venv lab-prereqs ## Start the lab hosts of inventories/lab
	lab/lab up
lab-down: ## Remove the lab hosts and their network
	lab/lab down
lab-status: ## Show the lab hosts
	lab/lab status

.PHONY: clean
clean: ## Remove build output (keeps .venv and the cache)
	rm -rf .build .pytest_cache .ruff_cache .hypothesis tests/output
