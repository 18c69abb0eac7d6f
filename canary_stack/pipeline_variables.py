"""The delivery pipeline's contract between the stack that builds it (canary_stack/pipeline.py) and
the steps its builds run (canary_stack/ops/pipeline.py): the variables, how they reach CodeBuild,
the build's time budget, and the command each buildspec runs.

Both sides import it, so it imports nothing: the CDK app must not load the operator tools, and the
tools must not load the CDK.
"""

from __future__ import annotations

# ---------------------------------------------------------------- the pipeline's variables

WEIGHT = "canaryWeight"
STEPS = "rolloutSteps"
BAKE = "rolloutBake"
VERIFY = "rolloutVerifyRequests"
EVIDENCE = "rolloutMinCanaryRequests"
# Each pipeline variable and the environment variable the CodeBuild actions hand it over as.
VARIABLE_ENV = {
    WEIGHT: "CANARY_WEIGHT",
    STEPS: "ROLLOUT_STEPS",
    BAKE: "ROLLOUT_BAKE",
    VERIFY: "ROLLOUT_VERIFY_REQUESTS",
    EVIDENCE: "ROLLOUT_MIN_CANARY_REQUESTS",
}
COMMITTED = "committed"  # canaryWeight's default: deploy what cdk.json says
# rolloutSteps' default: no rollout, one deploy at canaryWeight. A pipeline variable's default
# and value cannot be empty (1 to 1000 characters:
# https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_PipelineVariableDeclaration.html).
NO_ROLLOUT = "none"
DEFAULT_BAKE = "600"
NO_VERIFY = "0"
DEFAULT_EVIDENCE = "30"  # rollout --min-canary-requests' own default (a test holds them equal)
DEFAULTS = {WEIGHT: COMMITTED, STEPS: NO_ROLLOUT, BAKE: DEFAULT_BAKE, VERIFY: NO_VERIFY, EVIDENCE: DEFAULT_EVIDENCE}

# CodeBuild allows 5 to 2160 minutes (36 hours) per build
# (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_CreateProject.html, timeoutInMinutes).
# The rollout is refused before its first deploy unless its bakes and deploys fit in what is left
# after set-up (`rollout --max-duration`): a build killed by its timeout mid-bake rolls nothing
# back. Longer bakes: raise DEPLOY_TIMEOUT_MINUTES (up to 2160) and redeploy the pipeline, or run
# the rollout from a machine without a limit (`python -m canary_stack.ops.rollout`), or step the
# weight one pipeline run at a time (canaryWeight) and bake between runs.
DEPLOY_TIMEOUT_MINUTES = 8 * 60
SETUP_ALLOWANCE_MINUTES = 20  # queueing, provisioning and `make setup` come out of the same timeout
MAX_ROLLOUT_SECONDS = (DEPLOY_TIMEOUT_MINUTES - SETUP_ALLOWANCE_MINUTES) * 60

STEP_NAMES = ("check", "test", "diff", "deploy")
# What a buildspec runs for a step (from the checkout, after `make setup` made .venv).
PYTHON = ".venv/bin/python"


def step_command(step: str) -> str:
    assert step in STEP_NAMES, step
    return f"{PYTHON} -m canary_stack.ops pipeline {step}"
