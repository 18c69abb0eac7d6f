"""The delivery pipeline's build steps: `python -m canary_stack.ops pipeline STEP`.

    check    validate this run's pipeline variables and say what the run will do
    test     check, then `make test` with ci/crystal-in-docker as `crystal` (TestAndDiff build)
    diff     check, then `cdk diff` of the deployed stack against what this run will deploy, for
             the approver: the one weight, or every rollout step (TestAndDiff build)
    deploy   check, then the one deploy (`make deploy WEIGHT=W`) or the rollout (Deploy build)

The buildspecs in canary_stack/pipeline.py call these and nothing else: no shell reads a value.

CodePipeline's variables reach CodeBuild only as environment variables (pipeline.py maps them):

    CANARY_WEIGHT            canaryWeight: `committed` (the weight in the checked-out cdk.json) or 0-100
    ROLLOUT_STEPS            rolloutSteps: `none` (one deploy at canaryWeight) or W1,W2,... (a rollout)
    ROLLOUT_BAKE             rolloutBake: seconds each rollout step is watched against the canary alarms
    ROLLOUT_VERIFY_REQUESTS  rolloutVerifyRequests: `0` (none) or N requests to verify each rollout step
    ROLLOUT_MIN_CANARY_REQUESTS  rolloutMinCanaryRequests: canary answers to the rollout's own probe
                             traffic each bake needs as evidence (`0`: bake on the alarms alone, e.g.
                             when allowedCidr does not admit CodeBuild)
    AWS_REGION               set by CodeBuild; diff and deploy need it (the region the stack is in)

Every variable is checked before anything runs: a missing or bad one stops the step with one line
naming it (exit 2), and nothing is tested, diffed or deployed. Exit codes: 0 done, 1 the tests, the
diff, the deploy or the rollout failed (or rolled back), 2 a bad variable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO, TypeVar

from canary_stack.config import ConfigError
from canary_stack.constants import CDK_CLI, PROJECT_ROOT, STACK_NAME
from canary_stack.ops.cdk_cli import deploy_env
from canary_stack.ops.cli import EXIT_FAILED, EXIT_OK, UsageError, bounded_float, bounded_int, one_line
from canary_stack.ops.command import Command

# ---------------------------------------------------------------- the pipeline's variables
from canary_stack.pipeline_variables import (
    BAKE,
    COMMITTED,
    DEFAULTS,
    EVIDENCE,
    MAX_ROLLOUT_SECONDS,
    NO_ROLLOUT,
    NO_VERIFY,
    STEP_NAMES,
    STEPS,
    VARIABLE_ENV,
    VERIFY,
    WEIGHT,
)
from canary_stack.text import shorten

# CodeBuild sets AWS_REGION in every build: "The AWS Region where the build is running ... used
# primarily by the AWS SDKs" (https://docs.aws.amazon.com/codebuild/latest/userguide/build-env-ref-env-vars.html).
REGION_ENV = "AWS_REGION"
# The commit CodeBuild checked out, shown to the approver at the top of the diff (same page).
SOURCE_VERSION_ENV = "CODEBUILD_RESOLVED_SOURCE_VERSION"

# The `crystal` make test finds first on PATH in the TestAndDiff build: Ubuntu 22.04 (CodeBuild's
# standard:7.0) has no crystal package, so the compiler of the image the Dockerfile builds with
# runs through Docker (ci/crystal-in-docker says how and why).
CRYSTAL_WRAPPER = Path("ci") / "crystal-in-docker"
CI_BIN = Path("build") / "ci-bin"

# make test runs as on a laptop without an AWS account: none of the build role's credentials reach
# the tests, which never need them (a test that did would pass in CodeBuild and fail elsewhere).
# The sources the SDKs read from the environment: keys, profiles, web identity, and the container
# credential provider's endpoint (https://docs.aws.amazon.com/sdkref/latest/guide/feature-container-credentials.html);
# the instance metadata service is switched off.
CREDENTIAL_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
)


# ---------------------------------------------------------------- reading them

T = TypeVar("T")


@dataclass(frozen=True)
class Run:
    """What one pipeline run does, from its variables: one deploy at `weight`, or a rollout."""

    weight: int | None  # the one deploy's weight; None for a rollout
    weight_source: str  # how the weight was chosen, for the log
    steps: list[int] | None  # the rollout's weights; None for one deploy
    raw: dict[str, str] = field(default_factory=dict)  # the variables as given (validated)
    verify_requests: int | None = None
    bake: float = 0.0

    @property
    def targets(self) -> list[int]:
        """Every weight this run deploys, in order (the approver sees a diff for each)."""
        if self.steps is not None:
            return self.steps
        assert self.weight is not None
        return [self.weight]


def _variable(environ: Mapping[str, str], name: str) -> str:
    env = VARIABLE_ENV[name]
    if env not in environ:
        raise UsageError(
            f"{name} is not set ({env} is missing from the environment): the pipeline's CodeBuild actions "
            f"pass it; run this step from the pipeline, or set {env} (default {DEFAULTS[name]!r})"
        )
    raw = environ[env]
    if not raw.strip() or any(not c.isprintable() for c in raw):
        raise UsageError(f"{name} ({env}) must be one line of printable text, got {shorten(raw)}")
    return raw


def _parsed(name: str, parse: Callable[[str], T], raw: str) -> T:
    try:
        return parse(raw)
    except argparse.ArgumentTypeError as err:
        raise UsageError(f"{name} ({VARIABLE_ENV[name]}) {one_line(err)}") from None


def read_run(environ: Mapping[str, str], root: Path) -> Run:
    """The run the variables ask for, every one of them checked; UsageError (one line naming the
    variable) otherwise. The weights are checked with the app's own parser, with cdk.json's context
    around them, and the router must be deployable (App Mesh is refused here, before any test)."""
    # Imported here: the tools they come from are only needed once a step runs (`--help` is instant).
    from canary_stack.ops import rollout, verify
    from canary_stack.ops.committed import committed_config
    from canary_stack.ops.deployable import deploy_config

    raw = {name: _variable(environ, name) for name in VARIABLE_ENV}
    bake = _parsed(BAKE, bounded_float(0, rollout.MAX_BAKE_SECONDS), raw[BAKE])
    verify_requests = None
    if raw[VERIFY].strip() != NO_VERIFY:
        try:
            verify_requests = _parsed(VERIFY, bounded_int(1, verify.MAX_REQUESTS), raw[VERIFY])
        except UsageError as err:  # 0 is allowed too: it is the default, "none"
            raise UsageError(
                str(err).replace("must be a whole number", f"must be {NO_VERIFY} (none) or a whole number", 1)
            ) from None
    rolling = raw[STEPS].strip() != NO_ROLLOUT
    if rolling and raw[WEIGHT].strip() != COMMITTED:
        raise UsageError(
            f"{WEIGHT} and {STEPS} are both set; start the pipeline with {WEIGHT}={COMMITTED} for a rollout, "
            f"or {STEPS}={NO_ROLLOUT} for one deploy"
        )
    if verify_requests is not None and not rolling:
        raise UsageError(
            f"{VERIFY}={verify_requests} verifies the steps of a rollout, and {STEPS} is {NO_ROLLOUT}: "
            f"set {STEPS} (e.g. 10,50,100) or leave {VERIFY} at {NO_VERIFY}"
        )
    try:
        if rolling:
            steps = _parsed(STEPS, rollout.parse_steps, raw[STEPS])
            deploys = len(steps) + 1  # every step and a rollback to 0
            needed = len(steps) * bake + deploys * rollout.DEPLOY_ALLOWANCE
            if needed > MAX_ROLLOUT_SECONDS:
                raise UsageError(
                    f"{STEPS}={','.join(map(str, steps))} baking {BAKE}={bake:g}s each cannot finish in the Deploy "
                    f"build: {len(steps)} bakes plus {rollout.DEPLOY_ALLOWANCE:g}s for each of {deploys} deploys "
                    f"(the steps and a rollback) need {needed:g}s, more than {MAX_ROLLOUT_SECONDS}s; "
                    "use fewer steps or a shorter bake"
                )
            for weight in {0, *steps}:  # every step's configuration and the rollback's, as cdk deploy builds it
                deploy_config(root, {WEIGHT: str(weight)})
            _parsed(EVIDENCE, bounded_int(0, rollout.MAX_PROBE_LIMIT), raw[EVIDENCE])
            run = Run(None, "", steps, raw, verify_requests, bake)
            # Whatever else the rollout requires of its plan (enough probe traffic in a bake to see
            # the evidence it asks for, ...), checked now by the rollout's own parser, not a copy.
            try:
                rollout.parse_args(rollout.build_parser(), rollout_argv(run), root)
            except UsageError as err:
                names = ", ".join(f"{n} ({VARIABLE_ENV[n]})" for n in (STEPS, BAKE, EVIDENCE))
                raise UsageError(f"{names} make a rollout the rollout tool refuses: {one_line(err)}") from None
            return run
        if raw[WEIGHT].strip() == COMMITTED:
            weight = committed_config(root).canary_weight
            source = f"{WEIGHT}={COMMITTED}: the weight committed in cdk.json"
        else:
            # The app's parser names canaryWeight, the variable's own name, in its message.
            weight = deploy_config(root, {WEIGHT: raw[WEIGHT]}).canary_weight
            source = f"{WEIGHT}={weight}, the run's variable"
        deploy_config(root, {WEIGHT: str(weight)})  # the router too: App Mesh cannot be deployed
        return Run(weight, source, None, raw, None, bake)
    except ConfigError as err:
        raise UsageError(one_line(err)) from None


def require_region(environ: Mapping[str, str]) -> str:
    region = environ.get(REGION_ENV, "")
    if not region.strip():
        raise UsageError(
            f"{REGION_ENV} is not set: CodeBuild sets it to the build's region, where the pipeline and the "
            f"{STACK_NAME} stack are; outside CodeBuild, set it"
        )
    return region


def describe(run: Run) -> list[str]:
    """What the run will do, in the words the approver and the build log read."""
    if run.steps is None:
        return [f"this run deploys {STACK_NAME} once at canary weight {run.weight}% ({run.weight_source})"]
    plan = [
        f"this run rolls {STACK_NAME} out through canary weights {', '.join(f'{w}%' for w in run.steps)}, "
        f"watching the canary alarms {run.bake:g}s after each deploy"
    ]
    if run.verify_requests is not None:
        plan.append(
            f"  after each bake: {run.verify_requests} requests to the stack's Url output measure the split, "
            "the canary and production told apart by the stack's outputs"
        )
    evidence = run.raw[EVIDENCE].strip()
    if evidence != "0":
        plan.append(
            f"  in each bake: the rollout's own probe requests; fewer than {evidence} canary answers is no evidence"
        )
    plan.append(
        "  on a firing alarm, no evidence, a failed verify or a failed deploy: canary weight 0, and the build fails"
    )
    return plan


# ---------------------------------------------------------------- the tools it runs


def _run(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str]) -> int:
    """A program (never a shell), its output straight into the build log."""
    return subprocess.run(list(argv), cwd=cwd, env=dict(env)).returncode


def _rollout_main(argv: Sequence[str], *, stdout: TextIO, stderr: TextIO) -> int:
    from canary_stack.ops import rollout

    return rollout.main(argv, stdout=stdout, stderr=stderr)


def _make_main(argv: Sequence[str], *, environ: Mapping[str, str], stdout: TextIO, stderr: TextIO) -> int:
    from canary_stack.ops import make

    return make.main(argv, environ=environ, stdout=stdout, stderr=stderr)


@dataclass
class Tools:
    """What the steps run; the tests hand in recording stand-ins."""

    run: Callable[..., int] = _run  # run(argv, cwd=, env=) -> exit code
    rollout: Callable[..., int] = _rollout_main  # rollout.main(argv, stdout=, stderr=)
    make: Callable[..., int] = _make_main  # make.main(argv, environ=, stdout=, stderr=)


def diff_argv(weight: int, stack: str = STACK_NAME) -> list[str]:
    """`cdk diff` of the deployed stack against the app at `weight`. `--method template` compares
    the templates with the bootstrap lookup role; the default (a change set) would need the deploy
    role (https://docs.aws.amazon.com/cdk/v2/guide/ref-cli-cmd-diff.html, --method): the TestAndDiff
    build may only look, never change."""
    return [CDK_CLI, "diff", stack, "--method", "template", "--no-notices", "-c", f"{WEIGHT}={weight}"]


def rollout_argv(run: Run) -> list[str]:
    """The rollout tool with the run's variables as they were given (the tool checks them again)."""
    assert run.steps is not None
    argv = ["--steps", run.raw[STEPS].strip(), "--bake", run.raw[BAKE].strip()]
    if run.verify_requests is not None:
        # The URL from the stack's Url output; which answers are the canary's, verify reads from the
        # deployed stack's outputs (CanaryCommit, ...) given the stack: no commit is assumed here.
        argv += ["--verify-requests", str(run.verify_requests), "--url-from-stack"]
    argv += ["--min-canary-requests", run.raw[EVIDENCE].strip()]
    return [*argv, "--max-duration", str(MAX_ROLLOUT_SECONDS), "--stack-name", STACK_NAME]


# ---------------------------------------------------------------- the steps


@dataclass
class Step:
    environ: Mapping[str, str]
    root: Path
    out: TextIO
    err: TextIO
    tools: Tools

    def say(self, line: str) -> None:
        self.out.write(line + "\n")
        self.out.flush()

    def check(self) -> int:
        for line in describe(read_run(self.environ, self.root)):
            self.say(line)
        return EXIT_OK

    def test(self) -> int:
        for line in describe(read_run(self.environ, self.root)):
            self.say(line)
        wrapper = self.root / CRYSTAL_WRAPPER
        if not wrapper.is_file():
            raise UsageError(f"{CRYSTAL_WRAPPER} is missing from the checkout: make test needs it as `crystal`")
        ci_bin = self.root / CI_BIN
        ci_bin.mkdir(parents=True, exist_ok=True)
        link = ci_bin / "crystal"
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(wrapper.resolve())
        # `crystal` is the wrapper for make test only: PATH changes for this one child.
        env = {k: v for k, v in self.environ.items() if k not in CREDENTIAL_ENV}
        env["PATH"] = os.pathsep.join([str(ci_bin), self.environ.get("PATH", os.defpath)])
        env["AWS_EC2_METADATA_DISABLED"] = "true"
        self.say(f"make test, with {CRYSTAL_WRAPPER} as crystal")
        code = self.tools.run(["make", "test"], cwd=self.root, env=env)
        if code != EXIT_OK:
            self.say(f"make test failed (exit {code}): nothing is deployed")
            return EXIT_FAILED
        return EXIT_OK

    def diff(self) -> int:
        run = read_run(self.environ, self.root)
        region = require_region(self.environ)
        commit = self.environ.get(SOURCE_VERSION_ENV, "").strip() or "the checked-out tree"
        self.say(f"=== for the approver: what this run changes in {STACK_NAME} ({region}), source {commit} ===")
        for line in describe(run):
            self.say(line)
        env = deploy_env(self.environ)  # credentials: the lookup role reads the deployed stack
        targets = run.targets
        for i, weight in enumerate(targets, 1):
            label = f"step {i}/{len(targets)}: " if run.steps is not None else ""
            self.say(
                f"--- {label}cdk diff: {STACK_NAME} as deployed now -> canary weight {weight}% from this commit ---"
            )
            code = self.tools.run(diff_argv(weight), cwd=self.root, env=env)
            if code != EXIT_OK:
                self.say(f"cdk diff failed (exit {code}): the approver would not see the change; nothing is deployed")
                return EXIT_FAILED
        self.say("=== end of the change; the Approve action approves exactly this commit and these variables ===")
        return EXIT_OK

    def deploy(self) -> int:
        run = read_run(self.environ, self.root)
        require_region(self.environ)
        for line in describe(run):
            self.say(line)
        if run.steps is None:
            environ = {**self.environ, "CANARY_MAKE_WEIGHT": str(run.weight)}
            return self.tools.make(["deploy"], environ=environ, stdout=self.out, stderr=self.err)
        return self.tools.rollout(rollout_argv(run), stdout=self.out, stderr=self.err)


class Pipeline(Command):
    """The steps on the tools' one core: `pipeline STEP: error: ...` names the step that stopped."""

    name = "pipeline"
    prog = "python -m canary_stack.ops pipeline"
    interrupted_message = ""  # `pipeline STEP: interrupted`; the tool it ran has said what was left
    # Ctrl-C reaches the step's tools as it always did: the rollout says where it left the stack.
    defer_signals = False

    def __init__(self, *, environ: Mapping[str, str], root: Path, tools: Tools, **streams: TextIO | None) -> None:
        super().__init__(**streams)
        self.environ, self.root, self.tools = environ, root, tools

    def parse(self, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
        """One step name, no options: the buildspecs call `pipeline STEP` and nothing else."""
        if argv in (["-h"], ["--help"]):
            self.out.write("usage: python -m canary_stack.ops pipeline {" + ",".join(STEP_NAMES) + "}\n\n" + __doc__)
            raise SystemExit(EXIT_OK)
        if len(argv) != 1 or argv[0] not in STEP_NAMES:
            raise UsageError(f"expected one step, {', '.join(STEP_NAMES)}; got {shorten(' '.join(argv))}")
        self.name = f"pipeline {argv[0]}"
        return argparse.Namespace(step=argv[0]), []

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        step = Step(self.environ, self.root, self.out, self.err, self.tools)
        code: int = getattr(step, options.step)()
        return code


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    root: Path = PROJECT_ROOT,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    tools: Tools | None = None,
) -> int:
    environ = os.environ if environ is None else environ
    return Pipeline(environ=environ, root=root, tools=tools or Tools(), stdout=stdout, stderr=stderr).main(argv)


if __name__ == "__main__":
    sys.exit(main())
