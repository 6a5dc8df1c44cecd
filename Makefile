# Payment webhook stack: every command a developer or CI runs.
# `make help` lists the targets. The first target that needs tools creates .venv.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
# sam build looks for python3.13 on PATH: the venv's bin provides it.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# SAM CLI sends usage data unless this is 0.
export SAM_CLI_TELEMETRY := 0
# Dummy credentials: nothing here may reach real AWS unless a user deploys or sets
# AWS_SAM_STACK_NAME, and then their own credentials are used instead.
ifeq ($(AWS_SAM_STACK_NAME),)
export AWS_ACCESS_KEY_ID := testing
export AWS_SECRET_ACCESS_KEY := testing
export AWS_SESSION_TOKEN := testing
export AWS_DEFAULT_REGION := us-east-1
export AWS_REGION := us-east-1
unexport AWS_PROFILE
endif

# A private temporary folder: pytest keeps only three numbered ones per user in /tmp and
# deletes older ones, even when another run still has its PostgreSQL data there.
PYTEST := mkdir -p .local && $(PYTHON) -m pytest -p no:cacheprovider --basetemp=$(CURDIR)/.local/pytest
BUILD_DIR := .aws-sam/build
LOCAL_PORT ?= 3000

.PHONY: help venv build lint unit integration test local sign-events bench cost reliability clean

help: ## List the targets with one line each
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt src/requirements.txt scripts/bootstrap-venv.sh
	scripts/bootstrap-venv.sh
	touch $@

venv: $(VENV)/.installed ## Create .venv (Python 3.13) from the pinned requirements

build: $(VENV)/.installed ## Build the function package with sam build (.aws-sam/build)
	@echo "build: sam build (arm64, python3.13)"
	sam build --template template.yaml --build-dir $(BUILD_DIR) --cached --cache-dir .aws-sam/cache
	@echo "build: done"

lint: $(VENV)/.installed ## Run the template gates: cfn-lint, sam validate --lint, checkov
	scripts/lint-template.sh

unit: $(VENV)/.installed build ## Run the unit tests (real PostgreSQL and moto on 127.0.0.1)
	$(PYTEST) tests/unit

integration: $(VENV)/.installed build ## Run the integration tests (local stack, or AWS_SAM_STACK_NAME's stack)
	$(PYTEST) tests/integration

test: $(VENV)/.installed build lint ## Run every gate and test: what CI runs
	$(PYTEST) tests

local: $(VENV)/.installed build ## Start the local stack, replay events/, serve on 127.0.0.1 (LOCAL_PORT, default 3000) until Ctrl-C
	$(PYTHON) -m local_stack --port $(LOCAL_PORT)

sign-events: $(VENV)/.installed ## Re-sign events/*.json with a fresh timestamp (SECRET=whsec_... to choose the secret)
	$(PYTHON) scripts/sign_events.py $(if $(SECRET),--secret '$(SECRET)')

bench: $(VENV)/.installed build ## Measure latency, cold start, concurrency, size and cost; write docs/BENCHMARKS.md
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(PYTHON) -m bench

cost: $(VENV)/.installed ## Print the monthly cost estimate per environment
	$(PYTHON) -m bench.cost

reliability: $(VENV)/.installed build ## Run the fault-injection and fuzz tests; rewrite docs/RELIABILITY.md
	$(PYTEST) tests/reliability tests/unit/test_fuzz_handler.py
	$(PYTHON) -m tests.reliability.report

clean: ## Remove build output and local stack data (keeps .venv)
	rm -rf .aws-sam .local
