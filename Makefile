# The commands people run. `make synth` and `make test` install whatever is missing first.
SHELL := /bin/bash
.DEFAULT_GOAL := synth

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CDK := node_modules/.bin/cdk
CDK_FLAGS := --no-notices
export CDK_DISABLE_CLI_TELEMETRY := true

STACK := CrystalCanary
WEIGHT ?=
ROUTER ?=
FROM ?=
TO ?=
BASE ?= main
weight_ctx = $(if $(WEIGHT),-c canaryWeight='$(WEIGHT)')
router_ctx = $(if $(ROUTER),-c trafficRouter='$(ROUTER)')
# A weight step with FROM and TO (one alone is refused by the tool), else BASE against the working tree.
diff_args = $(if $(FROM)$(TO),$(if $(FROM),--from '$(FROM)') $(if $(TO),--to '$(TO)'),--base '$(BASE)')

.PHONY: setup system-deps synth test lint bench clean diff deploy snapshot integ

setup: $(VENV)/.installed node_modules/.installed .venv-checkov/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# checkov pins packaging<24 and an old boto3, which pytest 9 cannot share: its own virtualenv.
.venv-checkov/.installed: requirements-checkov.txt
	$(PYTHON) -m venv .venv-checkov
	.venv-checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The Crystal compiler and wrk are needed by the tests only (the image itself builds in Docker).
# Only what is missing is installed: Ubuntu 22.04 has wrk (https://packages.ubuntu.com/jammy/wrk)
# but no crystal package (it starts with 24.04: https://packages.ubuntu.com/noble/all/crystal-samples),
# so there a `crystal` must already be on PATH, e.g. ci/crystal-in-docker (as the pipeline's TestAndDiff does).
system-deps:
	@missing=""; \
	for tool in crystal wrk; do command -v "$$tool" >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

## synth: offline, no AWS credentials: `make synth` or `make synth WEIGHT=10`
synth: setup
	$(CDK) synth $(CDK_FLAGS) -q $(weight_ctx) $(router_ctx)
	@echo "templates in cdk.out/"

## test: everything CI runs
test: setup system-deps
	$(PY) -m pytest

## diff: offline, no AWS credentials. `make diff FROM=10 TO=50 [ROUTER=alb]`: one weight step;
## `make diff [BASE=<git rev>]`: what the working tree changes against main (or BASE)
diff: setup
	$(PY) -m canary_stack.ops.offline_diff $(diff_args) $(router_ctx)

## deploy: `make deploy WEIGHT=10 [ROUTER=alb]`; without WEIGHT, the weight committed in cdk.json.
## The app rejects a bad WEIGHT before anything is deployed; any failure exits non-zero.
deploy: setup
	$(CDK) deploy $(STACK) --require-approval never $(CDK_FLAGS) $(weight_ctx) $(router_ctx)

## snapshot: rewrite snapshots/ (snapshots/integ/ too) from the same synthesis the snapshot tests compare with
snapshot: setup
	UPDATE_SNAPSHOTS=1 $(PY) -m pytest -q -p no:cacheprovider tests/stack/test_snapshots.py tests/deploy_check/test_integ_app.py

## integ: the deploy check, in the AWS account and region of your credentials (needs Docker and a
## `cdk bootstrap`ped account). Deploys CrystalCanaryInteg (own stack and repository, weight 10) and
## its assertions, prints the verdict, then destroys both whatever happened: ~30 min, ~US$0.30
## (integ/integ_canary.py has the breakdown). Driven by the pinned CDK CLI, not @aws-cdk/integ-runner:
## the latter's latest release reads cloud assembly schema 53, aws-cdk-lib 2.275 writes 55.
INTEG_APP := $(PY) -m integ.integ_canary
INTEG_OUT := build/integ
integ_cdk = $(CDK) $(1) --app '$(INTEG_APP)' --output $(INTEG_OUT)/cdk.out --all $(CDK_FLAGS)
integ: setup
	@$(PY) -m integ.preflight
	@rm -rf $(INTEG_OUT); mkdir -p $(INTEG_OUT); failed=0; \
	trap 'echo "interrupted: destroying what was deployed" >&2; failed=1' INT TERM; \
	$(call integ_cdk,deploy) --require-approval never --outputs-file $(INTEG_OUT)/outputs.json || failed=1; \
	$(PY) -m integ.results $(INTEG_OUT)/outputs.json || failed=1; \
	$(call integ_cdk,destroy) --force || { failed=1; echo "error: cdk destroy failed: delete the stacks \
	CrystalCanaryIntegAssertions and CrystalCanaryInteg in the CloudFormation console" >&2; }; \
	exit $$failed

clean:
	rm -rf cdk.out .cdk-tmp build
