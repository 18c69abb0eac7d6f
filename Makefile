# The commands people run; `make help` lists them. `make synth` and `make test` install whatever is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := synth

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
CDK_FLAGS := --no-notices
export CDK_DISABLE_CLI_TELEMETRY := true

# The variables users give (WEIGHT, ROUTER, FROM, TO, BASE, UNVERIFIED, INTEG_OUT) never appear in a recipe's text:
# each one given (even empty) is exported raw, unexpanded by make, as CANARY_MAKE_<NAME>; the tools
# (canary_stack/ops/make.py) read it from the environment and run programs without a shell, and a
# recipe only ever reads it quoted ("$$CANARY_MAKE_INTEG_OUT"). No character of a value ($(...),
# quotes, backticks, ;, line breaks) is interpreted by make or a shell; a blank one is refused.
TOOL_VARS := WEIGHT ROUTER FROM TO BASE UNVERIFIED INTEG_OUT
INTEG_OUT := build/integ
define pass_raw
ifneq ($$(origin $1),undefined)
export CANARY_MAKE_$1 := $$(value $1)
endif
endef
$(foreach name,$(TOOL_VARS),$(eval $(call pass_raw,$(name))))
# make would otherwise export command-line variables to recipes itself, expanding them first.
unexport $(TOOL_VARS)
# Any other variable given on the command line is refused before anything runs: make would export
# it to every recipe, expanding it on the way (`X=$(shell ...)` would run), and a mistyped name
# (`weight=50`) would be ignored silently. PYTHON, PY and CDK name the toolchain (the interpreter
# that makes the venv, the venv's, the CDK CLI): commands by design, which the tests replace.
ALLOWED_VARS := $(TOOL_VARS) PYTHON PY CDK
unknown_vars := $(strip $(foreach v,$(.VARIABLES),$(if $(filter command line,$(origin $v)),$(if $(filter $v,$(ALLOWED_VARS)),,$v))))
ifneq ($(unknown_vars),)
$(error unknown variable $(firstword $(unknown_vars)); make takes $(ALLOWED_VARS) (see make help))
endif

.PHONY: help setup system-deps synth test lint bench clean diff deploy promote snapshot integ

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

# checkov pins packaging<24 and an old boto3, which pytest 9 cannot share: its own virtualenv, for
# the tests only (synth, diff and deploy do not wait for it).
.venv-checkov/.installed: requirements-checkov.txt
	@echo "setup: creating .venv-checkov and installing checkov (requirements-checkov.txt), for make test"
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --disable-pip-version-check --progress-bar off -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	@echo "setup: installing the pinned CDK CLI and esbuild (npm ci)"
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

## system-deps: the Crystal compiler, wrk and nginx, which only the tests need (Debian packages)
# Only what is missing is installed: Ubuntu 22.04 has wrk (https://packages.ubuntu.com/jammy/wrk)
# but no crystal package (it starts with 24.04: https://packages.ubuntu.com/noble/all/crystal-samples),
# so there a `crystal` must already be on PATH, e.g. ci/crystal-in-docker (as the pipeline's TestAndDiff does).
# nginx runs the lattice router's proxy configuration live (tests/proxy/); each tool is its package's name.
system-deps:
	@missing=""; \
	for tool in crystal wrk nginx; do command -v "$$tool" >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

## synth: templates into cdk.out/, offline: `make synth [WEIGHT=10] [ROUTER=alb]`
synth: setup
	$(PY) -m canary_stack.ops.make synth

## test: everything CI runs: make lint, then the tests (on three pytest-xdist workers)
# The Crystal test binaries are compiled first (cached in build/crystal/ by source hash): set-up, not
# test time, and not inside one xdist worker while the other waits.
test: lint .venv-checkov/.installed system-deps
	@echo "test: compiling the Crystal test binaries unless build/crystal/ has them"
	PYTHONPATH=tests $(PY) -c 'from crystal.support import build_server_and_specs; build_server_and_specs()'
	$(PY) -m pytest

## lint: ruff (check, format --check) and mypy, with the pinned versions (ruff.toml, mypy.ini)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

## diff: offline CloudFormation diff: `make diff FROM=10 TO=50 [ROUTER=alb]` (a step) or `make diff [BASE=rev]`
diff: setup
	$(PY) -m canary_stack.ops.make diff

## deploy: `make deploy [WEIGHT=10] [ROUTER=alb]`; without WEIGHT, the weight committed in cdk.json
deploy: setup
	$(PY) -m canary_stack.ops.make deploy

## promote: cdk.json runs the deployed canary's image as production at weight 0: `make promote [WEIGHT=100] [UNVERIFIED=1]`
promote: setup
	$(PY) -m canary_stack.ops.make promote

## snapshot: rewrite snapshots/ (snapshots/integ/ too) from the synthesis the tests compare with; names the files rewritten
snapshot: setup
	@before=$$(sha256sum snapshots/*.json snapshots/integ/*.json 2>/dev/null); \
	UPDATE_SNAPSHOTS=1 $(PY) -m pytest -q -p no:cacheprovider tests/stack/test_snapshots.py tests/deploy_check/test_integ_app.py || exit $$?; \
	after=$$(sha256sum snapshots/*.json snapshots/integ/*.json 2>/dev/null); \
	changed=$$(diff <(echo "$$before") <(echo "$$after") | sed -n 's/^> [0-9a-f]*  /rewrote /p'); \
	if [ -n "$$changed" ]; then echo "$$changed"; else echo "snapshots/ already up to date: nothing rewritten"; fi

## integ: the deploy check in your AWS account (Docker, a bootstrapped account; ~35 min, ~US$0.25), then destroys it: `make integ [ROUTER=lattice]`
# Deploys CrystalCanaryInteg (own stack and repository, weight 10, the alb router or ROUTER's) and its assertions in the account and
# region of your credentials, prints the verdict, then destroys both whatever happened (integ/integ_canary.py
# has the cost breakdown). Driven by the pinned CDK CLI, not @aws-cdk/integ-runner: the latter's latest
# release reads cloud assembly schema 53, aws-cdk-lib 2.275 writes 55. INTEG_OUT (default build/integ)
# is where its cloud assembly and outputs go.
INTEG_APP := $(PY) -m integ.integ_canary
integ_cdk = $(CDK) $(1) --app '$(INTEG_APP)' --output "$$CANARY_MAKE_INTEG_OUT/cdk.out" --all $(CDK_FLAGS)
integ: setup
	@[ -n "$$CANARY_MAKE_INTEG_OUT" ] || { echo "error: INTEG_OUT is empty: give a folder or leave it out (build/integ)" >&2; exit 2; }
	@$(PY) -m integ.preflight
	@rm -rf -- "$$CANARY_MAKE_INTEG_OUT"; mkdir -p -- "$$CANARY_MAKE_INTEG_OUT"; failed=0; \
	trap 'echo "interrupted: destroying what was deployed" >&2; failed=1' INT TERM; \
	$(call integ_cdk,deploy) --require-approval never --outputs-file "$$CANARY_MAKE_INTEG_OUT/outputs.json" || failed=1; \
	$(PY) -m integ.results "$$CANARY_MAKE_INTEG_OUT/outputs.json" || failed=1; \
	$(call integ_cdk,destroy) --force || { failed=1; echo "error: cdk destroy failed: delete the stacks \
	CrystalCanaryIntegAssertions and CrystalCanaryInteg in the CloudFormation console" >&2; }; \
	exit $$failed

## clean: remove cdk.out and the build caches
clean:
	rm -rf cdk.out .cdk-tmp build
