"""The optional delivery pipeline: Source -> TestAndDiff -> Approval -> Deploy of the canary stack.

A merge to the branch starts it. By default it deploys the canary stack at the pipeline variable
`canaryWeight`, whose default `committed` means "the weight in the checked-out cdk.json", read at
run time: a merged pull request that changes cdk.json is what the next run deploys, without
redeploying the pipeline. Starting it by hand with a number is a one-off step, like
`cdk deploy -c canaryWeight=N`.

Started with the variable `rolloutSteps` (e.g. `10,50,100`; default `none`) it runs the progressive
rollout instead, with the same tool as the command line (`python -m canary_stack.ops.rollout`):
each step deployed and baked `rolloutBake` seconds against the canary alarms, a rollback to
weight 0 and a failed build on an alarm or a failed deploy. A rollout that passes every step
leaves the canary at its last weight; production changes only through git (`make promote`).

The approver sees the tests' result and the offline CloudFormation diff from the committed weight
to the weight about to be deployed, or the rollout's plan and the diff of each of its steps.
"""

from __future__ import annotations

from aws_cdk import Aws, DefaultStackSynthesizer, Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_iam as iam
from constructs import Construct

from canary_stack.config import PipelineConfig
from canary_stack.constants import STACK_NAME, canary_alarm_prefix
from canary_stack.log_groups import log_group
from canary_stack.nag import acknowledge, arn_of, cfn_resource, logical_id_of, skip_checkov

WEIGHT_VARIABLE = "canaryWeight"
STEPS_VARIABLE = "rolloutSteps"
BAKE_VARIABLE = "rolloutBake"
VERIFY_VARIABLE = "rolloutVerifyRequests"
# The CDK bootstrap roles a `cdk deploy` assumes; the deploy role's CloudFormation execution role,
# not the build, holds the rights to change the canary stack.
BOOTSTRAP_ROLE_KINDS = ("deploy", "file-publishing", "image-publishing", "lookup")

# CodeBuild's Ubuntu 22.04 image: Python 3.11 (as .venv), Node.js 20 and Docker. Ubuntu 22.04 has
# no `crystal` package (packages.ubuntu.com lists it from noble on:
# https://packages.ubuntu.com/noble/all/crystal-samples), so the tests compile with the Crystal
# image the Dockerfile builds with (ci/crystal-in-docker). standard:8.0 is Ubuntu 24.04, whose
# crystal (1.11) is not the compiler the image ships either.
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
RUNTIMES = {"python": "3.11", "nodejs": "20"}

COMMITTED = "committed"  # canaryWeight's default: deploy what cdk.json says
# rolloutSteps' default: no rollout, one deploy at canaryWeight. A pipeline variable's default
# and value cannot be empty (1 to 1000 characters:
# https://docs.aws.amazon.com/codepipeline/latest/APIReference/API_PipelineVariableDeclaration.html).
NO_ROLLOUT = "none"
DEFAULT_BAKE = "600"
NO_VERIFY = "0"

# CodeBuild allows 5 to 2160 minutes (36 hours) per build
# (https://docs.aws.amazon.com/codebuild/latest/APIReference/API_CreateProject.html, timeoutInMinutes).
# The rollout is refused before its first deploy unless its bakes and deploys fit in what is left
# after set-up (`rollout --max-duration`): a build killed by its timeout mid-bake rolls nothing
# back. Longer bakes: raise DEPLOY_TIMEOUT here (up to 36 hours) and redeploy the pipeline, or run
# the rollout from a machine without a limit (`python -m canary_stack.ops.rollout`), or step the
# weight one pipeline run at a time (`canaryWeight`) and bake between runs.
DEPLOY_TIMEOUT = Duration.hours(8)
SETUP_ALLOWANCE = Duration.minutes(20)  # queueing, provisioning and `make setup` come out of the same timeout
MAX_ROLLOUT_SECONDS = int(DEPLOY_TIMEOUT.to_seconds() - SETUP_ALLOWANCE.to_seconds())

# Pipeline variables reach the builds only as these environment variables, and every command
# reads them quoted: no value is ever part of the shell text.
VARIABLE_ENV = {
    WEIGHT_VARIABLE: "CANARY_WEIGHT",
    STEPS_VARIABLE: "ROLLOUT_STEPS",
    BAKE_VARIABLE: "ROLLOUT_BAKE",
    VERIFY_VARIABLE: "ROLLOUT_VERIFY_REQUESTS",
}

# A run either deploys one weight or rolls out; both set is a mistake to stop before the tests.
_ONE_OR_THE_OTHER = (
    f'if [ "$ROLLOUT_STEPS" != {NO_ROLLOUT} ] && [ "$CANARY_WEIGHT" != {COMMITTED} ]; then '
    f'echo "error: {WEIGHT_VARIABLE} and {STEPS_VARIABLE} are both set; start the pipeline with '
    f'{WEIGHT_VARIABLE}={COMMITTED} for a rollout, or {STEPS_VARIABLE}={NO_ROLLOUT} for one deploy" >&2; false; fi'
)
# What one command sets for the next is exported: buildspec 0.2 keeps the environment from one
# command to the next (https://docs.aws.amazon.com/codebuild/latest/userguide/build-env-ref-cmd.html);
# exported variables carry over whether or not the commands share one shell.
# The committed weight: cdk.json's context as the CDK CLI reads it, validated by the app's parser
# (exit 2 with one line if it is not a weight). `&& export`, so the tool's failure fails the build.
_COMMITTED_WEIGHT = (
    "COMMITTED_WEIGHT=$(.venv/bin/python -m canary_stack.ops.committed canaryWeight) && export COMMITTED_WEIGHT"
)
# The weight to deploy: the variable, or the committed weight when the variable says so.
_RESOLVE_WEIGHT = (
    f'WEIGHT="$CANARY_WEIGHT"; if [ "$WEIGHT" = {COMMITTED} ]; then WEIGHT="$COMMITTED_WEIGHT"; fi; export WEIGHT'
)
# The Crystal compiler for `make test`: ci/crystal-in-docker as `crystal`, first on PATH, in this build only.
_CRYSTAL_ON_PATH = 'mkdir -p build/ci-bin && ln -sfn "$PWD/ci/crystal-in-docker" build/ci-bin/crystal'
_MAKE_TEST = 'PATH="$PWD/build/ci-bin:$PATH" make test'
# The rollout's optional verify: N requests to the stack's Url output after each bake. A bash
# array (in the rollout's own command: arrays cannot be exported), expanded quoted: the value stays
# one argument, which the tool validates.
_VERIFY_ARGS = (
    f'VERIFY=(); if [ "$ROLLOUT_VERIFY_REQUESTS" != {NO_VERIFY} ]; then '
    'VERIFY=(--verify-requests "$ROLLOUT_VERIFY_REQUESTS" --url-from-stack); fi'
)


def _rollout(target_stack: str, *extra: str) -> str:
    """The rollout tool at the pipeline's variables; it validates them (one line, exit 2)."""
    return (
        _VERIFY_ARGS
        + "; "
        + " ".join(
            [
                ".venv/bin/python -m canary_stack.ops.rollout",
                *extra,
                '--steps "$ROLLOUT_STEPS" --bake "$ROLLOUT_BAKE" "${VERIFY[@]}"',
                f"--max-duration {MAX_ROLLOUT_SECONDS} --stack-name {target_stack}",
            ]
        )
    )


def _one_deploy_or_rollout(one_deploy: str, rollout: str) -> str:
    return f'if [ "$ROLLOUT_STEPS" = {NO_ROLLOUT} ]; then {one_deploy}; else {rollout}; fi'


def tests_and_diff_commands(target_stack: str) -> list[str]:
    """TestAndDiff: the variables' combination, the tests, then what the approver approves."""
    diff = (
        'echo "committed canaryWeight: $COMMITTED_WEIGHT; deploying canaryWeight: $WEIGHT" && '
        '.venv/bin/python -m canary_stack.ops.offline_diff --from "$COMMITTED_WEIGHT" --to "$WEIGHT"'
    )
    return [
        _ONE_OR_THE_OTHER,
        _CRYSTAL_ON_PATH,
        _MAKE_TEST,
        _COMMITTED_WEIGHT,
        _RESOLVE_WEIGHT,
        _one_deploy_or_rollout(diff, _rollout(target_stack, "--dry-run")),
    ]


def deploy_commands(target_stack: str) -> list[str]:
    """Deploy: one `cdk deploy` at the resolved weight, or the rollout (exit 1 on a rollback)."""
    # `make deploy`, as from a laptop: the app's checks and the App Mesh refusal run before the CLI
    # builds any asset. make hands WEIGHT to the tool raw (never to a shell); the pipeline only
    # deploys the app's one canary stack.
    assert target_stack == STACK_NAME, f"make deploy deploys {STACK_NAME}, not {target_stack}"
    one_deploy = 'make deploy WEIGHT="$WEIGHT"'
    return [
        _ONE_OR_THE_OTHER,
        _COMMITTED_WEIGHT,
        _RESOLVE_WEIGHT,
        _one_deploy_or_rollout(one_deploy, _rollout(target_stack)),
    ]


def _buildspec(commands: list[str]) -> codebuild.BuildSpec:
    """Both builds: bash, the project's own set-up (venv, npm ci), then `commands`."""
    return codebuild.BuildSpec.from_object(
        {
            "version": "0.2",
            "env": {"shell": "bash"},
            "phases": {
                "install": {"runtime-versions": RUNTIMES, "commands": ["make setup"]},
                "build": {"commands": commands},
            },
        }
    )


def bootstrap_role_arn(kind: str, qualifier: str = DefaultStackSynthesizer.DEFAULT_QUALIFIER) -> str:
    return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/cdk-{qualifier}-{kind}-role-{Aws.ACCOUNT_ID}-{Aws.REGION}"


def stack_arn(stack_name: str) -> str:
    return f"arn:{Aws.PARTITION}:cloudformation:{Aws.REGION}:{Aws.ACCOUNT_ID}:stack/{stack_name}/*"


def canary_alarms_arn(target_stack: str) -> str:
    """Every canary alarm of `target_stack` (the rollout watches exactly these)."""
    prefix = canary_alarm_prefix(target_stack)
    return f"arn:{Aws.PARTITION}:cloudwatch:{Aws.REGION}:{Aws.ACCOUNT_ID}:alarm:{prefix}*"


class PipelineStack(Stack):
    """CodePipeline V2 deploying `target_stack` from `source` at the `canaryWeight` variable, or
    rolling it out through `rolloutSteps`."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        source: PipelineConfig,
        target_stack: str,
        **kwargs,
    ) -> None:
        super().__init__(scope, id, **kwargs)

        self.weight_variable = codepipeline.Variable(
            variable_name=WEIGHT_VARIABLE,
            default_value=COMMITTED,
            description=f"Canary weight (0-100) to deploy; '{COMMITTED}' deploys the checked-out cdk.json value",
        )
        self.steps_variable = codepipeline.Variable(
            variable_name=STEPS_VARIABLE,
            default_value=NO_ROLLOUT,
            description=f"Rollout weights, e.g. 10,50,100; '{NO_ROLLOUT}' deploys {WEIGHT_VARIABLE} once",
        )
        self.bake_variable = codepipeline.Variable(
            variable_name=BAKE_VARIABLE,
            default_value=DEFAULT_BAKE,
            description=f"Seconds each rollout step is watched against the canary alarms (with {STEPS_VARIABLE})",
        )
        self.verify_variable = codepipeline.Variable(
            variable_name=VERIFY_VARIABLE,
            default_value=NO_VERIFY,
            description="Requests to the stack's Url after each bake to measure the split (0: none); "
            "the load balancer must admit CodeBuild (allowedCidr)",
        )
        variables = {
            v.variable_name: v
            for v in (self.weight_variable, self.steps_variable, self.bake_variable, self.verify_variable)
        }
        build_env = {
            env: codebuild.BuildEnvironmentVariable(value=variables[name].reference())
            for name, env in VARIABLE_ENV.items()
        }

        self.test_project = codebuild.PipelineProject(
            self,
            "TestProject",
            description="make test, then the CloudFormation diff (or the rollout plan) of what is to be deployed",
            # Privileged: the Docker daemon runs the Crystal compiler of the image the Dockerfile
            # builds with (ci/crystal-in-docker), so the tests also test the compiler that image ships.
            # It pulls crystallang/crystal from Docker Hub, as the Deploy build's image asset does:
            # anonymous pulls are limited per IP address (what to do: ci/crystal-in-docker).
            environment=codebuild.BuildEnvironment(
                build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.MEDIUM, privileged=True
            ),
            timeout=Duration.minutes(60),
            logging=self._logging("TestLogs"),
            grant_report_group_permissions=False,  # no test reports: no report-group rights
            build_spec=_buildspec(tests_and_diff_commands(target_stack)),
        )

        # The bootstrap roles (the CLI assumes them for publishing assets and for CloudFormation)
        # and the rollout's reads of the canary alarms. CodeBuild and the pipeline add the
        # project's logs and artifact reads.
        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description=f"cdk deploy {target_stack}: the CDK bootstrap roles and the canary alarms' states",
        )
        self.deploy_role.add_to_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=[bootstrap_role_arn(kind) for kind in BOOTSTRAP_ROLE_KINDS],
            )
        )
        # DescribeAlarms takes the alarm resource type, so the grant names this stack's canary
        # alarms only (https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html).
        # A narrower scope than "*" hides composite alarms
        # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html):
        # the canary alarms are metric alarms.
        self._alarm_prefix = canary_alarm_prefix(target_stack)
        self._target_stack = target_stack
        self.deploy_role.add_to_policy(
            iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=[canary_alarms_arn(target_stack)])
        )
        # The optional verify reads the service URL from the stack's outputs. DescribeStacks takes
        # the stack resource type, whose ARN ends in a generated id
        # (https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudformation.html).
        self.deploy_role.add_to_policy(
            iam.PolicyStatement(actions=["cloudformation:DescribeStacks"], resources=[stack_arn(target_stack)])
        )
        self.deploy_project = codebuild.PipelineProject(
            self,
            "DeployProject",
            description=f"cdk deploy {target_stack} at the pipeline's canaryWeight, or its rollout",
            role=self.deploy_role,
            # Docker builds the Crystal image asset, which needs privileged mode.
            environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE, privileged=True),
            timeout=DEPLOY_TIMEOUT,
            logging=self._logging("DeployLogs"),
            grant_report_group_permissions=False,
            # The variables are #{variables.*}, resolved by the pipeline in the action's
            # configuration (a buildspec cannot reference pipeline variables). The app validates
            # the weight, the rollout tool its steps and bake.
            build_spec=_buildspec(deploy_commands(target_stack)),
        )

        source_output = codepipeline.Artifact("Source")
        owner, repo = source.repository.split("/", 1)
        self.source_action = actions.CodeStarConnectionsSourceAction(
            action_name="Source",
            connection_arn=source.connection_arn,
            owner=owner,
            repo=repo,
            branch=source.branch,
            output=source_output,
        )
        self.test_action = actions.CodeBuildAction(
            action_name="TestAndDiff",
            project=self.test_project,
            input=source_output,
            environment_variables=build_env,
        )
        self.approval_action = actions.ManualApprovalAction(
            action_name="Approve",
            additional_information=(
                f"Deploys {target_stack} at canaryWeight #{{variables.{WEIGHT_VARIABLE}}}, or rolls it out "
                f"through #{{variables.{STEPS_VARIABLE}}} baking #{{variables.{BAKE_VARIABLE}}}s a step "
                f"(verify: #{{variables.{VERIFY_VARIABLE}}} requests). "
                "The TestAndDiff logs show the tests and the CloudFormation diff (or the rollout plan)."
            ),
        )
        # The same source artifact as the tests: what was approved is what is deployed.
        self.deploy_action = actions.CodeBuildAction(
            action_name="Deploy",
            project=self.deploy_project,
            input=source_output,
            environment_variables=build_env,
        )
        self.pipeline = codepipeline.Pipeline(
            self,
            "Pipeline",
            pipeline_type=codepipeline.PipelineType.V2,
            variables=list(variables.values()),
            stages=[
                codepipeline.StageProps(stage_name="Source", actions=[self.source_action]),
                codepipeline.StageProps(stage_name="TestAndDiff", actions=[self.test_action]),
                codepipeline.StageProps(stage_name="Approval", actions=[self.approval_action]),
                codepipeline.StageProps(stage_name="Deploy", actions=[self.deploy_action]),
            ],
        )

        self._grant_connection_use(source.connection_arn)
        self._acknowledge_findings()

    def _source_action_role(self) -> iam.IRole:
        # The role CDK made for the source action (Pipeline/Source/Source/CodePipelineActionRole).
        source = self.pipeline.node.find_child("Source").node.find_child("Source")
        return source.node.find_child("CodePipelineActionRole")  # type: ignore[return-value]

    def _grant_connection_use(self, connection_arn: str) -> None:
        """CDK grants only `codestar-connections:UseConnection`. AWS CodeStar Connections was renamed
        AWS CodeConnections, the console creates `arn:aws:codeconnections:...` connections since
        2024-07-01, and "when specifying a resource in the IAM policy, the service prefix needs to match
        that of the resource" (https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html).
        Both actions on the one connection: whichever prefix the ARN has, its action is granted."""
        self._source_action_role().add_to_principal_policy(
            iam.PolicyStatement(actions=["codeconnections:UseConnection"], resources=[connection_arn])
        )

    def _acknowledge_findings(self) -> None:
        """cdk-nag findings this stack keeps on purpose, each on the construct it is about."""
        bucket = self.pipeline.artifact_bucket
        bucket_arn = arn_of(bucket)
        # CDK's grants on the pipeline's own artifact bucket (read for builds; read/write for the
        # pipeline and the source action), not on any other bucket.
        artifact_reads = [
            "Action::s3:GetBucket*",
            "Action::s3:GetObject*",
            "Action::s3:List*",
            f"Resource::{bucket_arn}/*",
        ]
        artifact_writes = artifact_reads + ["Action::s3:Abort*", "Action::s3:DeleteObject*"]
        artifacts_reason = (
            "CDK's standard grant on this pipeline's artifact bucket only: the objects are the pipeline's artifacts"
        )
        for project in (self.test_project, self.deploy_project):
            assert project.role is not None
            policy = cfn_resource(project.role.node.find_child("DefaultPolicy"))
            log_group = f"<{logical_id_of(project)}>"
            acknowledge(policy, [f"AwsSolutions-IAM5[{f}]" for f in artifact_reads], artifacts_reason)
            acknowledge(
                policy,
                "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                f"log-group:/aws/codebuild/{log_group}:*]",
                "CodeBuild writes log streams it names per build, under this project's log group only",
            )
            acknowledge(
                cfn_resource(project),
                "AwsSolutions-CB4",
                "Artifacts and logs hold the repository's source and templates, no secrets; they are "
                "encrypted with AWS managed keys, and a customer managed key would add cost, not protection",
            )
        deploy_policy = self.deploy_role.node.find_child("DefaultPolicy")
        acknowledge(
            deploy_policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudwatch:<AWS::Region>:<AWS::AccountId>:alarm:{self._alarm_prefix}*]",
            "The rollout reads the states of this stack's canary alarms, which share this name prefix "
            "(the names are set in observability.py); the alarms are made after the pipeline",
        )
        acknowledge(
            deploy_policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:stack/{self._target_stack}/*]",
            "The rollout reads the Url output of the canary stack; a stack ARN ends in an id "
            "CloudFormation generates, so the stack is named and its id left open",
        )
        # The pipeline's role and the role CDK made for the source action.
        for role in (self.pipeline.role, self._source_action_role()):
            policy = cfn_resource(role.node.find_child("DefaultPolicy"))
            acknowledge(policy, [f"AwsSolutions-IAM5[{f}]" for f in artifact_writes], artifacts_reason)
        acknowledge(
            cfn_resource(bucket),
            "AwsSolutions-S1",
            "Holds only this pipeline's intermediate artifacts, reached through this stack's roles; "
            "CloudTrail records who started or approved a deploy",
        )
        skip_checkov(
            bucket,
            "CKV_AWS_18",
            "Holds only this pipeline's intermediate artifacts, reached through this stack's roles; "
            "CloudTrail records who started or approved a deploy",
        )
        skip_checkov(
            bucket,
            "CKV_AWS_21",
            "Every artifact is rebuilt from the git commit it came from; versions would only accumulate",
        )

    def _logging(self, id: str) -> codebuild.LoggingOptions:
        # Build logs are kept as long as the canary's own logs, not forever.
        return codebuild.LoggingOptions(
            cloud_watch=codebuild.CloudWatchLoggingOptions(
                log_group=log_group(self, id, removal_policy=RemovalPolicy.RETAIN)
            )
        )
