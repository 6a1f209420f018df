# parel-monitoring task runner. Everything sets itself up from nothing:
#   make demo   - build and run the bundle's functions locally against real services
#   make test   - ruff, sam validate --lint, sam build and the whole pytest suite (Python 3.13)
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
# The Lambda runtime's Python: pyenv's newest 3.13, else a working python3.13 on PATH.
PYTHON313 ?= $(shell for p in $$(ls -d $$HOME/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | sort -Vr) $$(command -v python3.13); do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (3, 13)' 2>/dev/null && { echo "$$p"; break; }; done)
RUNTIME_DIR := .cache/lambda-runtime/python3.13
# Local builds (emulator, tests, demo) target this machine; deploy builds use the template default (arm64).
LOCAL_ARCH := $(shell uname -m | sed -e 's/aarch64/arm64/')
LOCAL_BUILD_DIR := .aws-sam/local
FN ?= HealthAppFunction
EVENT ?= events/health-app.json
ENV_VARS ?= $(firstword $(wildcard env.local.json) env.json)
PORT ?= 3000

export SAM_CLI_TELEMETRY := 0
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: help venv runtime checkov node-deps browser-deps build build-deploy validate lint format test test-unit demo invoke api smoke bench reliability deploy clean

help:
	@echo "make demo                         build, then invoke the functions locally against real services"
	@echo "make test                         ruff + sam validate --lint + sam build + pytest"
	@echo "make invoke FN=... EVENT=...      one function through the Lambda emulator (like sam local invoke)"
	@echo "make api [PORT=3000]              the HttpApi routes on 127.0.0.1 (like sam local start-api, no Docker)"
	@echo "make smoke URL=... [TOKEN=...]    check a deployed stack or make api: health, auth, test alert, heal dry run"
	@echo "make bench [QUICK=1]              benchmarks (cold init, warm latency, heal, alerts, flood, probes) into BENCHMARKS.md"
	@echo "make reliability [SECTIONS=...] [QUICK=1]  faults, hostile input, injection, secrets, load, checkov, Schemathesis into RELIABILITY.md"
	@echo "                                  (QUICK=1: every part with small sizes, a few minutes, into BENCHMARKS.quick.md / RELIABILITY.quick.md)"
	@echo "make build-deploy / make deploy   sam build for arm64 (bytecode precompiled) / sam deploy --guided"

venv: $(VENV)/.installed
$(VENV)/.installed: requirements-dev.txt layers/shared/requirements.txt
	@test -n "$(PYTHON313)" || { echo "error: python3.13 not found (install it, e.g. 'pyenv install 3.13', or set PYTHON313=/path/to/python3.13)"; exit 1; }
	$(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@

# What the Lambda Python runtime provides outside the bundle (/var/runtime): the runtime client and boto3.
runtime: $(RUNTIME_DIR)/.installed
$(RUNTIME_DIR)/.installed: requirements-runtime.txt
	@test -n "$(PYTHON313)" || { echo "error: python3.13 not found"; exit 1; }
	rm -rf $(RUNTIME_DIR)
	$(PYTHON313) -m pip install --quiet --disable-pip-version-check --target $(RUNTIME_DIR) -r requirements-runtime.txt
	@touch $@

# checkov (template security scan) in its own virtualenv: it pins a boto3 that conflicts with ours.
CHECKOV_DIR := .cache/checkov-venv
checkov: $(CHECKOV_DIR)/.installed
$(CHECKOV_DIR)/.installed: requirements-checkov.txt
	@test -n "$(PYTHON313)" || { echo "error: python3.13 not found"; exit 1; }
	rm -rf $(CHECKOV_DIR)
	$(PYTHON313) -m venv $(CHECKOV_DIR)
	$(CHECKOV_DIR)/bin/pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $@

# sam build precompiles the bytecode itself (build/Makefile, SAM's makefile builder): Lambda's code and layer
# directories are read-only, so without it every cold start would compile every module again.
# Rebuilt only when the template, a function, the layer or the build rules changed (make invoke/api/demo build
# first); changed build rules also bypass SAM's cache (.aws-sam/cache keys the layer on its sources only).
BUILD_INPUTS := template.yaml $(shell find functions layers build -type f ! -path '*/__pycache__/*' ! -name '*.pyc' 2>/dev/null)
build: $(LOCAL_BUILD_DIR)/.built
# The contract OpenApiFunction serves: openapi.yaml as JSON (no YAML parser in Lambda). Committed too, so a plain
# `sam build` ships it; tests/unit/test_openapi.py fails when the copy differs from openapi.yaml.
functions/openapi/openapi.json: openapi.yaml tools/openapi_contract.py | $(VENV)/.installed
	PYTHONPATH=tools $(PY) tools/openapi_contract.py --json > $@.tmp && mv $@.tmp $@
$(LOCAL_BUILD_DIR)/.built: $(VENV)/.installed $(BUILD_INPUTS)
	sam build --build-dir $(LOCAL_BUILD_DIR) --parameter-overrides Architecture=$(LOCAL_ARCH) \
		$(if $(filter build/%,$?),--no-cached)
	@touch $@

build-deploy: venv functions/openapi/openapi.json
	sam build

deploy: build-deploy
	sam deploy --guided

validate: venv
	sam validate --lint

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: venv
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# The real BullMQ (Node) that tests and the demo use to create queue states, and the real Auth.js adapters
# the heal tests seed databases through (tests/authjs; its Prisma harness is a package of its own).
node-deps: tests/bullmq/node_modules/.installed tests/authjs/node_modules/.installed \
	tests/authjs/prisma/node_modules/.installed
tests/bullmq/node_modules/.installed: tests/bullmq/package.json tests/bullmq/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found (Node.js 18+ is needed for the BullMQ scenarios)"; exit 1; }
	cd tests/bullmq && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
tests/authjs/node_modules/.installed: tests/authjs/package.json tests/authjs/package-lock.json
	@command -v npm >/dev/null || { echo "error: npm not found (Node.js 20+ is needed for the Auth.js adapters)"; exit 1; }
	cd tests/authjs && npm ci --no-audit --no-fund --loglevel=error
	@touch $@
tests/authjs/prisma/node_modules/.installed: tests/authjs/prisma/package.json tests/authjs/prisma/package-lock.json \
	tests/authjs/prisma/schema.prisma
	@command -v npm >/dev/null || { echo "error: npm not found (Node.js 20+ is needed for the Auth.js adapters)"; exit 1; }
	cd tests/authjs/prisma && npm ci --no-audit --no-fund --loglevel=error && npm run --silent setup
	@touch $@

# Debian's Chromium and ChromeDriver for the dashboard's browser test (test tools never download a browser).
browser-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

test: venv runtime checkov node-deps browser-deps lint validate build
	$(PY) -m pytest

test-unit: venv checkov
	$(PY) -m pytest tests/unit

invoke: venv runtime build
	$(PY) tools/lambda_emulator.py invoke $(FN) -e $(EVENT) --env-vars $(ENV_VARS) --build-dir $(LOCAL_BUILD_DIR)

demo: venv runtime node-deps build
	$(PY) tools/demo.py

api: venv runtime build
	$(PY) tools/local_api.py --port $(PORT) --env-vars $(ENV_VARS)

# Checks a deployed stack (URL = the ApiBaseUrl output) or `make api`; TOKEN, or ADMIN_API_TOKEN from the
# environment, adds the test alert and the heal dry run. Recipe not echoed: it carries the token.
smoke: venv
	@test -n "$(URL)" || { echo "error: URL is required: make smoke URL=https://<api-id>.execute-api.<region>.amazonaws.com [TOKEN=...] (the stack's ApiBaseUrl output, or http://127.0.0.1:3000 for make api)"; exit 2; }
	@$(PY) tools/smoke.py --url "$(URL)" $(if $(TOKEN),--token "$(TOKEN)",)

# The layer and the test helpers on the path, as pytest's pythonpath has them. QUICK=1 (BENCH_QUICK=1, read by
# tools/report.py): every script with small sizes and rounds, written to BENCHMARKS.quick.md / RELIABILITY.quick.md.
BENCH = $(if $(filter-out 0,$(QUICK)),BENCH_QUICK=1 )PYTHONPATH=layers/shared:tests:tools:benchmarks $(PY)

bench: venv runtime node-deps build
	$(BENCH) benchmarks/bench.py
	$(BENCH) benchmarks/bench_heal_jobs.py
	$(BENCH) benchmarks/bench_heal_sessions.py
	$(BENCH) benchmarks/bench_alerts.py
	$(BENCH) benchmarks/bench_flood.py
	$(BENCH) benchmarks/bench_probe.py

# SECTIONS=schemathesis (or tests, load, checkov; comma-separated): only those, their RELIABILITY.md sections replaced.
reliability: venv runtime checkov node-deps build
	$(BENCH) tools/reliability.py $(if $(SECTIONS),--sections $(SECTIONS),)

clean:
	rm -rf .aws-sam .cache $(VENV) .pytest_cache .ruff_cache
