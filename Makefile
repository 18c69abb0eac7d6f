# The commands people run; `make help` lists them. `make synth` and `make test` install whatever is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := synth

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export CDK_DISABLE_CLI_TELEMETRY := true

# The variables users give (WEIGHT, ROUTER, FROM, TO, BASE) never appear in a recipe: each one given
# (even empty) is exported raw, unexpanded by make, as CANARY_MAKE_<NAME>, and canary_stack/ops/make.py
# turns it into arguments of a program run without a shell. No character of a value ($(...), quotes,
# backticks, ;, line breaks) is interpreted by make or a shell; a blank one is refused there.
TOOL_VARS := WEIGHT ROUTER FROM TO BASE
define pass_raw
ifneq ($$(origin $1),undefined)
export CANARY_MAKE_$1 := $$(value $1)
endif
endef
$(foreach name,$(TOOL_VARS),$(eval $(call pass_raw,$(name))))
# make would otherwise export command-line variables to recipes itself, expanding them first.
unexport $(TOOL_VARS)

.PHONY: help setup system-deps synth test lint bench clean diff deploy promote snapshot

## help: this list
help:
	@awk '/^## [a-z-]+: / { name = $$2; sub(/:$$/, "", name); sub(/^## [a-z-]+: /, ""); printf "make %-12s %s\n", name, $$0 }' $(MAKEFILE_LIST)

## setup: install the Python packages (.venv) and the CDK CLI (node_modules); about a minute the first time
setup: $(VENV)/.installed node_modules/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@echo "setup: creating $(VENV) and installing the Python packages of requirements-dev.txt (about a minute the first time)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --progress-bar off -r requirements-dev.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@echo "setup: installing the pinned CDK CLI and esbuild (npm ci)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## system-deps: the Crystal compiler and wrk, which only the tests need (Debian packages)
system-deps:
	@if ! command -v crystal >/dev/null || ! command -v wrk >/dev/null; then \
	  echo "installing Debian packages: crystal wrk"; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq crystal wrk >/dev/null; \
	fi

## synth: templates into cdk.out/, offline: `make synth [WEIGHT=10] [ROUTER=alb]`
synth: setup
	$(PY) -m canary_stack.ops.make synth

## test: everything CI runs
test: setup system-deps
	$(PY) -m pytest

## diff: offline CloudFormation diff: `make diff FROM=10 TO=50 [ROUTER=alb]` (a step) or `make diff [BASE=rev]`
diff: setup
	$(PY) -m canary_stack.ops.make diff

## deploy: `make deploy [WEIGHT=10] [ROUTER=alb]`; without WEIGHT, the weight committed in cdk.json
deploy: setup
	$(PY) -m canary_stack.ops.make deploy

## promote: cdk.json runs the canary's image as production at weight 0; prints the diff and the commit to make
promote: setup
	$(PY) -m canary_stack.ops.promote

## snapshot: rewrite snapshots/ from the same synthesis the snapshot test compares with; names the files rewritten
snapshot: setup
	@before=$$(sha256sum snapshots/*.json 2>/dev/null); \
	UPDATE_SNAPSHOTS=1 $(PY) -m pytest -q -p no:cacheprovider tests/stack/test_snapshots.py || exit $$?; \
	after=$$(sha256sum snapshots/*.json 2>/dev/null); \
	changed=$$(diff <(echo "$$before") <(echo "$$after") | sed -n 's/^> [0-9a-f]*  /rewrote /p'); \
	if [ -n "$$changed" ]; then echo "$$changed"; else echo "snapshots/ already up to date: nothing rewritten"; fi

## clean: remove cdk.out and the build caches
clean:
	rm -rf cdk.out .cdk-tmp build
