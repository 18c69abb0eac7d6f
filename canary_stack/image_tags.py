"""The workshop's moving tags (`epoch`, `vanilla`), moved without a rebuild or a CodeBuild job.

What the tasks run is named by immutable tags (the image asset hashes, canary_stack/image.py). People
who followed the workshop still pull `epoch` and `vanilla`, so a small custom resource of ours
(canary_stack/handlers/tag_image.js) points each at an image that is already in the repository:
it reads the image's manifest (ECR BatchGetImage) and puts it under the moving tag (ECR PutImage),
which is how ECR documents retagging without pulling or pushing
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-retag.html). It fails the deploy
with a clear reason when the source image is not in the repository.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CustomResource, Duration
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from canary_stack.log_groups import log_group
from canary_stack.nag import skip_checkov_for_deploy_time_function

HANDLERS = Path(__file__).resolve().parent / "handlers"
TAG_IMAGE_SOURCE = HANDLERS / "tag_image.js"
# Lambda's Node.js 24 runtime: supported until 2028-04-30, the latest Node.js runtime Lambda offers
# (https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html). Its own AWS SDK v3 is used.
NODEJS_RUNTIME = lambda_.Runtime.NODEJS_24_X
# Every handler of ours runs at deploy time, makes its SDK clients and one or two ECR or CodeBuild
# calls. On Lambda's defaults (3 s, 128 MB: https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html)
# a cold start of that can pass 3 s, and a timed-out handler fails the deploy. Lambda gives CPU in
# proportion to memory (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html):
# 256 MB halves the cold start's CPU time; a minute covers the SDK's retries of a throttled call.
HANDLER_TIMEOUT = Duration.minutes(1)
HANDLER_MEMORY_MB = 256
TAG_RESOURCE_TYPE = "Custom::ImageTag"
# Exactly what retagging needs (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImage.html,
# .../API_BatchGetImage.html), on the one repository.
TAG_ACTIONS = ("ecr:BatchGetImage", "ecr:PutImage")


class ImageTagger(Construct):
    """One Lambda function (inline code, its own role) behind every moving tag of one repository."""

    def __init__(self, scope: Construct, id: str, *, repository: ecr.IRepository) -> None:
        super().__init__(scope, id)
        self.repository = repository
        logs = log_group(self, "Logs")
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Moves the workshop's tags (epoch, vanilla) in one repository",
            inline_policies={
                "Retag": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(actions=list(TAG_ACTIONS), resources=[repository.repository_arn]),
                        # Its own log group only (the log group's ARN ends in ':*', its streams).
                        iam.PolicyStatement(
                            actions=["logs:CreateLogStream", "logs:PutLogEvents"], resources=[logs.log_group_arn]
                        ),
                    ]
                )
            },
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=NODEJS_RUNTIME,
            # Inline (CloudFormation's Code.ZipFile): no asset to publish, and the template shows the code.
            code=lambda_.Code.from_inline(TAG_IMAGE_SOURCE.read_text()),
            handler="index.handler",
            role=self.role,
            log_group=logs,
            timeout=HANDLER_TIMEOUT,
            memory_size=HANDLER_MEMORY_MB,
            description="Points a moving image tag at an image already in the repository (BatchGetImage + PutImage)",
        )
        skip_checkov_for_deploy_time_function(self.function)

    def tag(self, id: str, *, source_tag: str, tag: str) -> CustomResource:
        """`repository:tag` := the image `repository:source_tag`, on every deploy that changes either."""
        return CustomResource(
            self,
            id,
            service_token=self.function.function_arn,
            resource_type=TAG_RESOURCE_TYPE,
            properties={
                "RepositoryName": self.repository.repository_name,
                "SourceTag": source_tag,
                "Tag": tag,
            },
        )
