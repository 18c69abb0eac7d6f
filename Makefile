# The commands people run. `make synth` and `make test` install whatever is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := synth

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
CDK_FLAGS := --no-notices
export CDK_DISABLE_CLI_TELEMETRY := true

WEIGHT ?=
weight_ctx = $(if $(WEIGHT),-c canaryWeight=$(WEIGHT))

.PHONY: setup system-deps synth test lint bench clean

setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Crystal compiler and wrk are needed by the tests only (the image itself builds in Docker).
system-deps:
	@if ! command -v crystal >/dev/null || ! command -v wrk >/dev/null; then \
	  echo "installing Debian packages: crystal wrk"; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq crystal wrk >/dev/null; \
	fi

## synth: offline, no AWS credentials: `make synth` or `make synth WEIGHT=10`
synth: setup
	$(CDK) synth $(CDK_FLAGS) -q $(weight_ctx)
	@echo "templates in cdk.out/"

## test: everything CI runs
test: setup system-deps
	$(PY) -m pytest

clean:
	rm -rf cdk.out .cdk-tmp build
