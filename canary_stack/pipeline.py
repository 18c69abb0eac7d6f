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

The builds run on a git clone of the commit (the source action's full-clone output), so the tests
that need git work as on a laptop. Each build step is project code (`python -m canary_stack.ops
pipeline STEP`, canary_stack/ops/pipeline.py): the buildspecs hold no shell logic.

The approver sees the tests' result and `cdk diff` of the deployed stack against what this run
deploys (the one weight, or every rollout step): the real change, a new image included. The
offline diff between two weights stays for pull requests (`make diff`).
"""

from __future__ import annotations

from aws_cdk import Aws, DefaultStackSynthesizer, Duration, RemovalPolicy, Stack
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_iam as iam
from constructs import Construct

from canary_stack.config import PipelineConfig
from canary_stack.constants import STACK_NAME
from canary_stack.log_groups import log_group
from canary_stack.nag import acknowledge, arn_of, cfn_resource, logical_id_of, skip_checkov
from canary_stack.pipeline_variables import (
    BAKE,
    COMMITTED,
    DEFAULT_BAKE,
    DEFAULT_EVIDENCE,
    DEPLOY_TIMEOUT_MINUTES,
    EVIDENCE,
    NO_ROLLOUT,
    NO_VERIFY,
    STEPS,
    VARIABLE_ENV,
    VERIFY,
    WEIGHT,
    step_command,
)

# The pipeline's variables, their defaults and the environment variables the builds get them as
# live with the steps that read them (canary_stack/ops/pipeline.py, which imports no CDK).
WEIGHT_VARIABLE, STEPS_VARIABLE, BAKE_VARIABLE, VERIFY_VARIABLE, EVIDENCE_VARIABLE = (
    WEIGHT,
    STEPS,
    BAKE,
    VERIFY,
    EVIDENCE,
)
# The CDK bootstrap roles a `cdk deploy` assumes; the deploy role's CloudFormation execution role,
# not the build, holds the rights to change the canary stack.
BOOTSTRAP_ROLE_KINDS = ("deploy", "file-publishing", "image-publishing", "lookup")
# What `cdk diff --method template` assumes to read the deployed template: the lookup role only
# ("template ... Uses the lookup role": https://docs.aws.amazon.com/cdk/v2/guide/ref-cli-cmd-diff.html);
# the other methods create a change set with the deploy role, which the test build must not hold.
# What the lookup role may read is the bootstrap stack's to say (`cdk bootstrap`), not this stack's.
DIFF_ROLE_KINDS = ("lookup",)

# CodeBuild's Ubuntu 22.04 image: Python 3.11 (as .venv), Node.js 20 and Docker. Ubuntu 22.04 has
# no `crystal` package (packages.ubuntu.com lists it from noble on:
# https://packages.ubuntu.com/noble/all/crystal-samples), so the tests compile with the Crystal
# image the Dockerfile builds with (ci/crystal-in-docker). standard:8.0 is Ubuntu 24.04, whose
# crystal (1.11) is not the compiler the image ships either.
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
RUNTIMES = {"python": "3.11", "nodejs": "20"}

DEPLOY_TIMEOUT = Duration.minutes(DEPLOY_TIMEOUT_MINUTES)

# The Approve action's text: what the run deploys, and where the approver reads the change. Pipeline
# variables resolve in action configuration, and a configuration field holds at most 1000
# characters (https://docs.aws.amazon.com/codepipeline/latest/userguide/reference-variables.html).
APPROVAL_TEXT = (
    "Commit {commit}: deploys {stack} at canaryWeight #{{variables.canaryWeight}}, or rolls it out through "
    "#{{variables.rolloutSteps}} baking #{{variables.rolloutBake}}s a step (verify: "
    "#{{variables.rolloutVerifyRequests}} requests). The TestAndDiff build's log (View details) ends with "
    "`cdk diff` of {stack} as deployed now against what this run deploys: the one weight, or every rollout "
    "step, with any image change (a promotion's production image, a new canary image)."
)


def tests_and_diff_commands() -> list[str]:
    """TestAndDiff: the variables checked, the tests, then what the approver approves."""
    return [step_command("test"), step_command("diff")]


def deploy_commands() -> list[str]:
    """Deploy: the variables checked again, then one `make deploy` or the rollout."""
    return [step_command("deploy")]


def _buildspec(commands: list[str]) -> codebuild.BuildSpec:
    """Both builds: bash, the project's own set-up (venv, npm ci), then `commands`: the steps of
    canary_stack/ops/pipeline.py, which read the variables from the environment. No command holds
    a variable or any shell logic."""
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
        # The steps deploy the app's one canary stack (ops/pipeline.py), by its name.
        assert target_stack == STACK_NAME, f"the pipeline's steps deploy {STACK_NAME}, not {target_stack}"
        self._target_stack = target_stack

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
            description="Requests to the stack's Url after each rollout step's bake to measure the split (0: none); "
            "the load balancer must admit CodeBuild (allowedCidr)",
        )
        self.evidence_variable = codepipeline.Variable(
            variable_name=EVIDENCE_VARIABLE,
            default_value=DEFAULT_EVIDENCE,
            description="Canary answers to the rollout's own probe traffic each bake needs as evidence; "
            "0 bakes on the alarms alone (e.g. when allowedCidr does not admit CodeBuild)",
        )
        variables = {
            v.variable_name: v
            for v in (
                self.weight_variable,
                self.steps_variable,
                self.bake_variable,
                self.verify_variable,
                self.evidence_variable,
            )
        }
        # Pipeline variables resolve in action configuration only (a buildspec cannot reference
        # them): both CodeBuild actions pass them as environment variables, which the steps read
        # and check (canary_stack/ops/pipeline.py).
        build_env = {
            env: codebuild.BuildEnvironmentVariable(value=variables[name].reference())
            for name, env in VARIABLE_ENV.items()
        }

        # `cdk diff` of the deployed stack (the lookup role) and the tests; nothing that changes AWS.
        self.test_role = iam.Role(
            self,
            "TestRole",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description=f"make test, and cdk diff of {target_stack} through the CDK bootstrap lookup role",
        )
        self.test_role.add_to_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole"], resources=[bootstrap_role_arn(kind) for kind in DIFF_ROLE_KINDS]
            )
        )
        self.test_project = codebuild.PipelineProject(
            self,
            "TestProject",
            description=f"make test, then cdk diff of {target_stack} as deployed against what the run deploys",
            role=self.test_role,
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
            build_spec=_buildspec(tests_and_diff_commands()),
        )

        # The bootstrap roles (the CLI assumes them for publishing assets and for CloudFormation)
        # and the rollout's reads of the canary alarms and the stack's outputs. CodeBuild and the
        # pipeline add the project's logs, artifact reads and the connection (the clone).
        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description=f"cdk deploy {target_stack}: the CDK bootstrap roles, the canary alarms' states, the stack's outputs",
        )
        self.deploy_role.add_to_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=[bootstrap_role_arn(kind) for kind in BOOTSTRAP_ROLE_KINDS],
            )
        )
        # The rollout reads the canary alarms with AlarmTypes=[MetricAlarm, CompositeAlarm]: "To use
        # this operation and return information about composite alarms, you must be signed on with
        # the cloudwatch:DescribeAlarms permission that is scoped to *"
        # (https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html).
        # A grant on the canary alarms' ARNs (the action's alarm resource type in
        # https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazoncloudwatch.html)
        # would stop the rollout before its first step. The action only reads alarm states.
        self.deploy_role.add_to_policy(iam.PolicyStatement(actions=["cloudwatch:DescribeAlarms"], resources=["*"]))
        # The rollout's verify reads the stack's outputs (Url, and which version is which), and the
        # rollout the stack's status around a failed deploy. DescribeStacks takes the stack resource
        # type, whose ARN ends in a generated id
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
            build_spec=_buildspec(deploy_commands()),
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
            # OutputArtifactFormat CODEBUILD_CLONE_REF: "the next CodeBuild job clones the repository
            # (instead of CodePipeline downloading the files). This provides access to repository
            # history" (https://docs.aws.amazon.com/cdk/api/v2/python/aws_cdk.pipelines/ConnectionSourceOptions.html).
            # The default zip has no .git, and the tests that use git (worktrees, rev-parse) fail on it
            # (https://docs.aws.amazon.com/codepipeline/latest/userguide/action-reference-CodestarConnectionSource.html).
            code_build_clone_output=True,
        )
        self.test_action = actions.CodeBuildAction(
            action_name="TestAndDiff",
            project=self.test_project,
            input=source_output,
            environment_variables=build_env,
        )
        self.approval_action = actions.ManualApprovalAction(
            action_name="Approve",
            additional_information=APPROVAL_TEXT.format(
                commit=self.source_action.variables.commit_id, stack=target_stack
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
        """Who uses the connection: the source action (to fetch the commit) and, with the full-clone
        output, both CodeBuild roles (to clone it): "To use this mode, you must grant your CodeBuild
        environment permissions to use the connection", `UseConnection` on the connection ARN
        (https://docs.aws.amazon.com/codepipeline/latest/userguide/troubleshooting.html#codebuild-role-connections).

        CDK grants only `codestar-connections:UseConnection`. AWS CodeStar Connections was renamed
        AWS CodeConnections, the console creates `arn:aws:codeconnections:...` connections since
        2024-07-01, and "when specifying a resource in the IAM policy, the service prefix needs to match
        that of the resource" (https://docs.aws.amazon.com/dtconsole/latest/userguide/rename.html).
        Both actions on the one connection: whichever prefix the ARN has, its action is granted."""
        both = iam.PolicyStatement(
            actions=["codestar-connections:UseConnection", "codeconnections:UseConnection"],
            resources=[connection_arn],
        )
        self._source_action_role().add_to_principal_policy(
            iam.PolicyStatement(actions=["codeconnections:UseConnection"], resources=[connection_arn])
        )
        for role in (self.test_role, self.deploy_role):
            role.add_to_principal_policy(both)

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
            "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:DescribeAlarms only, which must be scoped to * to return composite alarms "
            "(https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/API_DescribeAlarms.html); "
            "the rollout reads the states of this stack's canary alarms, metric or composite",
        )
        acknowledge(
            deploy_policy,
            f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:cloudformation:<AWS::Region>:<AWS::AccountId>:stack/{self._target_stack}/*]",
            "The rollout and its verify read the outputs of the canary stack; a stack ARN ends in an id "
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
