"""The canary image: built from crystal_src/ and published to a named ECR repository.

cdk-docker-image-deployment does the copy (a CodeBuild job behind a custom resource). Two of its
habits are corrected here from the outside, because they break what reviewers rely on:

* It names its custom resource `CustomResource<Date.now()>`, so every synthesis differs and every
  deploy (a weight step included) replaces the resource and re-runs the copy. We give it a fixed
  logical id and a property holding the image's content hash: CloudFormation then sends an Update
  (the library starts the copy again) exactly when the image changes, and nothing otherwise.
* Its CodeBuild project uses the retired `aws/codebuild/standard:5.0` image; we pin 7.0, which
  has the same docker and AWS CLI the copy's buildspec uses.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Acknowledgment, CfnResource, CustomResource, RemovalPolicy, Stack, Validations
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from cdk_docker_image_deployment import Destination, DockerImageDeployment, Source
from constructs import Construct

from canary_stack.constants import CRYSTAL_SRC
from canary_stack.nag import acknowledge, arn_of

CODEBUILD_IMAGE = "aws/codebuild/standard:7.0"


def stabilize(deployment: DockerImageDeployment, *, logical_id: str, content_hash: str) -> CfnResource:
    """Gives the library's custom resource a fixed logical id that re-runs on `content_hash` only."""
    timestamped = [
        child
        for child in deployment.node.children
        if isinstance(child, CustomResource) and child.node.id.startswith("CustomResource")
    ]
    if len(timestamped) != 1:
        raise RuntimeError(
            "cdk-docker-image-deployment no longer creates one CustomResource<timestamp>: "
            f"found {[c.node.id for c in timestamped]}; revisit canary_stack/image.py"
        )
    resource = timestamped[0].node.default_child
    assert isinstance(resource, CfnResource)
    resource.override_logical_id(logical_id)
    resource.add_property_override("ImageContentHash", content_hash)
    # The construct path (template metadata under `cdk synth`) still holds the timestamp.
    if resource.get_metadata("aws:cdk:path") is not None:
        resource.add_metadata("aws:cdk:path", f"{deployment.node.path}/CustomResource")

    project = deployment.node.find_child("DockerImageDeployProject").node.default_child
    assert isinstance(project, codebuild.CfnProject)
    project.add_property_override("Environment.Image", CODEBUILD_IMAGE)
    return resource


def acknowledge_library_findings(deployment: DockerImageDeployment) -> None:
    """cdk-nag findings inside cdk-docker-image-deployment: its resources are built in its
    constructor and cannot be changed from outside without forking it. Each is acknowledged on the
    exact child construct, with why it is acceptable for a build-time copy job."""
    project = deployment.node.find_child("DockerImageDeployProject")
    role = deployment.node.find_child("DockerImageDeployRole")
    provider = deployment.node.find_child("CRProvider")
    handlers = [deployment.node.find_child(h) for h in ("onEventHandler", "isCompleteHandler")]
    project_ref = f"<{Stack.of(project).resolve(Stack.of(project).get_logical_id(project.node.default_child))}>"

    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::*]",
        "ecr:GetAuthorizationToken has no resource-level permissions; it is only a login",
    )
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
        f"log-group:/aws/codebuild/{project_ref}:*]",
        "CodeBuild's own log streams of this one project; stream names are not known in advance",
    )
    acknowledge(
        role,
        "AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:codebuild:<AWS::Region>:"
        f"<AWS::AccountId>:report-group/{project_ref}-*]",
        "CDK's default CodeBuild grant, limited to this project's report groups",
    )
    acknowledge(
        project,
        "AwsSolutions-CB4",
        "The copy job has no artifacts and no secrets: it pulls and pushes an image between two "
        "ECR repositories, whose own encryption applies; a customer-managed key adds cost only",
    )
    for handler in handlers:
        acknowledge(
            handler,
            "AwsSolutions-L1",
            "The library's handlers use aws-sdk v2, which only the nodejs16.x runtime ships. "
            "Lambda still creates nodejs16.x functions until 2027-02-01 (follow-up in the README)",
        )
        acknowledge(
            handler,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "Only lets the handler write its own CloudWatch logs",
        )
    for function in ("framework-onEvent", "framework-isComplete", "framework-onTimeout"):
        child = provider.node.find_child(function)
        acknowledge(
            child,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "CDK's custom resource framework: its own logs only",
        )
        for handler in handlers:
            acknowledge(
                child,
                f"AwsSolutions-IAM5[Resource::{arn_of(handler)}:*]",
                "CDK's custom resource framework may invoke any version of the library's handler",
            )
    waiter = provider.node.find_child("waiter-state-machine")
    for function in ("framework-isComplete", "framework-onTimeout"):
        acknowledge(
            waiter,
            f"AwsSolutions-IAM5[Resource::{arn_of(provider.node.find_child(function))}:*]",
            "CDK's custom resource framework may invoke any version of its own functions",
        )
    acknowledge(
        waiter, "AwsSolutions-SF1", "CDK's custom resource waiter; each poll is logged by the handlers it invokes"
    )
    acknowledge(waiter, "AwsSolutions-SF2", "CDK's custom resource waiter: a 30 s poll loop, nothing to trace")
    Validations.of(deployment).acknowledge(
        Acknowledgment(
            id="Annotation::aws-cdk-lib/aws-lambda-nodejs:runtimeUpdateSdkV2Breakage",
            reason="Known: the library's handlers need nodejs16.x (see AwsSolutions-L1 above)",
        )
    )


class ImagePublication(Construct):
    """Copies the image built from crystal_src/ to `repository:tag`, once per image content."""

    def __init__(self, scope: Construct, id: str, *, repository: ecr.IRepository, tag: str, directory: Path) -> None:
        super().__init__(scope, id)
        self.tag = tag
        self.deployment = DockerImageDeployment(
            self,
            "Copy",
            # The library's Source.directory predates the asset `platform` option: the image is
            # built for the machine that runs `cdk deploy` (x86_64 in CI), as the tasks expect.
            source=Source.directory(str(directory)),
            destination=Destination.ecr(repository, tag=tag),
        )
        asset = self.deployment.node.find_child("asset")
        assert isinstance(asset, ecr_assets.DockerImageAsset)
        self.content_hash: str = asset.asset_hash
        self.custom_resource = stabilize(self.deployment, logical_id=f"{id}ImageCopy", content_hash=self.content_hash)
        acknowledge_library_findings(self.deployment)


class CanaryImages(Construct):
    """The named repository, the canary's copy in it, and the image each version runs."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        repository_name: str,
        canary_tag: str,
        production_tag: str,
        promote: bool,
        directory: Path = CRYSTAL_SRC,
        disposable: bool = False,
    ) -> None:
        """`disposable=True` deletes the repository and every image in it with the stack (DESTROY +
        EmptyOnDelete): only for a repository the stack owns outright, such as the integration test's
        own (integ/integ_canary.py), never the user's."""
        super().__init__(scope, id)
        # A user-facing name is the point here: the workshop pushed to this repository by hand,
        # and people pull from it. RETAIN: deleting the stack must not delete released images.
        self.repository = ecr.Repository(
            self,
            "Repository",
            repository_name=repository_name,
            image_scan_on_push=True,
            image_tag_mutability=ecr.TagMutability.MUTABLE,  # `epoch` and `vanilla` move by design
            encryption=ecr.RepositoryEncryption.AES_256,
            removal_policy=RemovalPolicy.DESTROY if disposable else RemovalPolicy.RETAIN,
            empty_on_delete=True if disposable else None,
        )
        self.canary_publication = ImagePublication(
            self, "Canary", repository=self.repository, tag=canary_tag, directory=directory
        )
        self.canary_image = ecs.ContainerImage.from_ecr_repository(self.repository, canary_tag)
        self.canary_revision = self.canary_publication.content_hash

        # Production runs whatever the production tag holds. It changes only by promotion
        # (productionImage=canary), which copies the canary's image to that tag as well.
        self.production_publication: ImagePublication | None = None
        self.production_revision: str | None = None
        if promote:
            self.production_publication = ImagePublication(
                self, "Promotion", repository=self.repository, tag=production_tag, directory=directory
            )
            self.production_revision = self.production_publication.content_hash
        self.production_image = ecs.ContainerImage.from_ecr_repository(self.repository, production_tag)
