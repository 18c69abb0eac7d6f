"""The optional delivery pipeline: Source -> TestAndDiff -> Approval -> Deploy of the canary stack.

A merge to the branch starts it; it deploys the canary stack at the pipeline variable
`canaryWeight`, whose default `committed` means "the weight in the checked-out cdk.json", read at
run time: a merged pull request that changes cdk.json is what the next run deploys, without
redeploying the pipeline. Starting it by hand with a number is a one-off step, like
`cdk deploy -c canaryWeight=N`. The approver sees the tests' result
and the offline CloudFormation diff from the committed weight to the weight about to be deployed.
"""

from __future__ import annotations

from aws_cdk import Acknowledgment, Aws, DefaultStackSynthesizer, Duration, RemovalPolicy, Stack, Validations
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_codepipeline_actions as actions
from aws_cdk import aws_iam as iam
from constructs import Construct

from canary_stack.config import PipelineConfig
from canary_stack.log_groups import log_group

WEIGHT_VARIABLE = "canaryWeight"
# The CDK bootstrap roles a `cdk deploy` assumes; the deploy role's CloudFormation execution role,
# not the build, holds the rights to change the canary stack.
BOOTSTRAP_ROLE_KINDS = ("deploy", "file-publishing", "image-publishing", "lookup")

# CodeBuild's current image: Python 3.11 (as .venv), Node.js 20 and Docker.
BUILD_IMAGE = codebuild.LinuxBuildImage.STANDARD_7_0
RUNTIMES = {"python": "3.11", "nodejs": "20"}

COMMITTED = "committed"  # the variable's default: deploy what cdk.json says
# The committed weight from the checked-out cdk.json (what the app uses without -c).
_COMMITTED_WEIGHT = (
    '.venv/bin/python -c \'import json; print(json.load(open("cdk.json"))["context"].get("canaryWeight", 0))\''
)
# The weight to deploy: the variable, or the committed weight when the variable says so.
_RESOLVE_WEIGHT = (
    f'COMMITTED_WEIGHT=$({_COMMITTED_WEIGHT}); WEIGHT="$CANARY_WEIGHT"; '
    f'if [ "$WEIGHT" = {COMMITTED} ]; then WEIGHT="$COMMITTED_WEIGHT"; fi'
)


def _buildspec(*commands: str) -> codebuild.BuildSpec:
    """Both builds: bash, the project's own set-up (venv, npm ci), then `commands`."""
    return codebuild.BuildSpec.from_object(
        {
            "version": "0.2",
            "env": {"shell": "bash"},
            "phases": {
                "install": {"runtime-versions": RUNTIMES, "commands": ["make setup"]},
                "build": {"commands": list(commands)},
            },
        }
    )


def bootstrap_role_arn(kind: str, qualifier: str = DefaultStackSynthesizer.DEFAULT_QUALIFIER) -> str:
    return f"arn:{Aws.PARTITION}:iam::{Aws.ACCOUNT_ID}:role/cdk-{qualifier}-{kind}-role-{Aws.ACCOUNT_ID}-{Aws.REGION}"


class PipelineStack(Stack):
    """CodePipeline V2 deploying `target_stack` from `source` at the `canaryWeight` variable."""

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
        weight_env = {"CANARY_WEIGHT": codebuild.BuildEnvironmentVariable(value=self.weight_variable.reference())}

        self.test_project = codebuild.PipelineProject(
            self,
            "TestProject",
            description="make test, then the CloudFormation diff from the committed weight to the one to deploy",
            environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE, compute_type=codebuild.ComputeType.MEDIUM),
            timeout=Duration.minutes(60),
            logging=self._logging("TestLogs"),
            grant_report_group_permissions=False,  # no test reports: no report-group rights
            build_spec=_buildspec(
                "make test",
                _RESOLVE_WEIGHT,
                'echo "committed canaryWeight: $COMMITTED_WEIGHT; deploying canaryWeight: $WEIGHT"',
                '.venv/bin/python -m canary_stack.ops.offline_diff --from "$COMMITTED_WEIGHT" --to "$WEIGHT"',
            ),
        )

        # Only the bootstrap roles: the CLI assumes them for publishing assets and for
        # CloudFormation. CodeBuild and the pipeline add the project's logs and artifact reads.
        self.deploy_role = iam.Role(
            self,
            "DeployRole",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
            description=f"cdk deploy {target_stack}: may only assume the CDK bootstrap roles",
        )
        self.deploy_role.add_to_policy(
            iam.PolicyStatement(
                actions=["sts:AssumeRole"],
                resources=[bootstrap_role_arn(kind) for kind in BOOTSTRAP_ROLE_KINDS],
            )
        )
        self.deploy_project = codebuild.PipelineProject(
            self,
            "DeployProject",
            description=f"cdk deploy {target_stack} at the pipeline's canaryWeight",
            role=self.deploy_role,
            # Docker builds the Crystal image asset, which needs privileged mode.
            environment=codebuild.BuildEnvironment(build_image=BUILD_IMAGE, privileged=True),
            timeout=Duration.minutes(90),
            logging=self._logging("DeployLogs"),
            grant_report_group_permissions=False,
            # CANARY_WEIGHT is #{variables.canaryWeight}, resolved by the pipeline in the action's
            # configuration (a buildspec cannot reference pipeline variables). The app validates it.
            build_spec=_buildspec(
                _RESOLVE_WEIGHT,
                f'npx cdk deploy {target_stack} --require-approval never --no-notices -c canaryWeight="$WEIGHT"',
            ),
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
            environment_variables=weight_env,
        )
        self.approval_action = actions.ManualApprovalAction(
            action_name="Approve",
            additional_information=(
                f"Deploys {target_stack} at canaryWeight #{{variables.{WEIGHT_VARIABLE}}}. "
                "The TestAndDiff logs show the tests and the CloudFormation diff from the committed weight."
            ),
        )
        # The same source artifact as the tests: what was approved is what is deployed.
        self.deploy_action = actions.CodeBuildAction(
            action_name="Deploy",
            project=self.deploy_project,
            input=source_output,
            environment_variables=weight_env,
        )
        self.pipeline = codepipeline.Pipeline(
            self,
            "Pipeline",
            pipeline_type=codepipeline.PipelineType.V2,
            variables=[self.weight_variable],
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
        bucket_arn = f"<{self.get_logical_id(bucket.node.default_child)}.Arn>"
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
            policy = project.role.node.find_child("DefaultPolicy").node.default_child
            log_group = f"<{self.get_logical_id(project.node.default_child)}>"
            _acknowledge(policy, artifacts_reason, *(f"IAM5[{f}]" for f in artifact_reads))
            _acknowledge(
                policy,
                "CodeBuild writes log streams it names per build, under this project's log group only",
                f"IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:log-group:/aws/codebuild/{log_group}:*]",
            )
            _acknowledge(
                project.node.default_child,
                "Artifacts and logs hold the repository's source and templates, no secrets; they are "
                "encrypted with AWS managed keys, and a customer managed key would add cost, not protection",
                "CB4",
            )
        # The pipeline's role and the role CDK made for the source action.
        for role in (self.pipeline.role, self._source_action_role()):
            policy = role.node.find_child("DefaultPolicy").node.default_child
            _acknowledge(policy, artifacts_reason, *(f"IAM5[{f}]" for f in artifact_writes))
        _acknowledge(
            bucket.node.default_child,
            "Holds only this pipeline's intermediate artifacts, reached through this stack's roles; "
            "CloudTrail records who started or approved a deploy",
            "S1",
        )

    def _logging(self, id: str) -> codebuild.LoggingOptions:
        # Build logs are kept as long as the canary's own logs, not forever.
        return codebuild.LoggingOptions(
            cloud_watch=codebuild.CloudWatchLoggingOptions(
                log_group=log_group(self, id, removal_policy=RemovalPolicy.RETAIN)
            )
        )


def _acknowledge(construct: Construct, reason: str, *findings: str) -> None:
    Validations.of(construct).acknowledge(
        *(Acknowledgment(id=f"AwsSolutions::AwsSolutions-{finding}", reason=reason) for finding in findings)
    )
