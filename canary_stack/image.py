"""The images: built from crystal_src/, published to a named ECR repository under immutable tags.

Every image is named by its CDK image-asset hash (64 hex characters), which is also its tag in the
repository. The repository is IMMUTABLE_WITH_EXCLUSION: a hash tag can never be pointed at other
content, so a task definition naming `repo:<hash>` shows in the template exactly what runs.
* The canary runs the image built from crystal_src/: `repo:<canary asset hash>`.
* Production runs `repo:<productionImage>`, a hash committed in cdk.json (`make promote` sets it to
  the canary's). Promotion therefore builds and copies nothing: the image is already there.
* The workshop's moving tags follow along for people who pull them: `epoch` -> the canary's image,
  `vanilla` -> production's (canary_stack/image_tags.py).

cdk-docker-image-deployment does the one copy (a CodeBuild job behind a custom resource). Its
habits that break what reviewers and a fresh account rely on are corrected here from the outside:

* It names its custom resource `CustomResource<Date.now()>`, so every synthesis differs and every
  deploy (a weight step included) replaces the resource and re-runs the copy. We give it a fixed
  logical id and a property holding the image's content hash: CloudFormation then sends an Update
  (the library starts the copy again) exactly when the image changes, and nothing otherwise.
* Its CodeBuild project uses the retired `aws/codebuild/standard:5.0` image; we pin 7.0, which
  has the same docker and AWS CLI the copy's buildspec uses. Its buildspec pushes unconditionally,
  which an immutable tag refuses the second time (a revert to an earlier image, a retried deploy,
  an adopted repository): our handler starts no build when the tag is already there.
* Its two Lambda handlers are nodejs16.x with aws-sdk v2 (Lambda stops creating nodejs16.x
  functions on 2027-02-01) and only fail on a FAILED build; ours (canary_stack/handlers/
  image_copy.js) run on nodejs24.x with the runtime's SDK v3 and fail at once on any final
  status other than SUCCEEDED. They replace the library's code inline (Code.ZipFile only).
* Its Python `Source.directory` cannot pass the asset `platform` (its keyword arguments predate
  it), so the image would be built for whatever machine runs `cdk deploy`. The TypeScript method
  takes any DockerImageAssetOptions; we call it through jsii with the tasks' platform.
"""

from __future__ import annotations

import typing
from pathlib import Path

import jsii
from aws_cdk import (
    Acknowledgment,
    CfnResource,
    CustomResource,
    IgnoreMode,
    IStableStringProducer,
    Lazy,
    RemovalPolicy,
    SymlinkFollowMode,
    Validations,
)
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from cdk_docker_image_deployment import Destination, DockerImageDeployment, Source
from constructs import Construct

from canary_stack.config import CpuArchitecture
from canary_stack.constants import CRYSTAL_SRC
from canary_stack.image_tags import HANDLER_MEMORY_MB, HANDLER_TIMEOUT, HANDLERS, NODEJS_RUNTIME, ImageTagger
from canary_stack.log_groups import log_group, settle
from canary_stack.nag import acknowledge, arn_of, logical_id_of, skip_checkov, skip_checkov_for_deploy_time_function

CODEBUILD_IMAGE = "aws/codebuild/standard:7.0"
IMAGE_COPY_SOURCE = HANDLERS / "image_copy.js"
# The library's handler construct ids and the export of ours that replaces each.
IMAGE_COPY_HANDLERS = {"onEventHandler": "index.onEvent", "isCompleteHandler": "index.isComplete"}

# The task's CPU and the platform its image is built for: one setting, so they always agree.
PLATFORMS: dict[CpuArchitecture, tuple[ecr_assets.Platform, ecs.CpuArchitecture]] = {
    "x86_64": (ecr_assets.Platform.LINUX_AMD64, ecs.CpuArchitecture.X86_64),
    "arm64": (ecr_assets.Platform.LINUX_ARM64, ecs.CpuArchitecture.ARM64),
}


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
    project_ref = f"<{logical_id_of(project)}>"

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
            reason="Raised while the library constructs its handlers on nodejs16.x; replace_copy_handlers then "
            "deploys them on nodejs24.x with our own SDK v3 code (tests/stack/test_images.py)",
        )
    )
    skip_library_checkov_findings(deployment)


def skip_library_checkov_findings(deployment: DockerImageDeployment) -> None:
    """checkov's findings on the library's functions (the same ones cdk-nag reports above)."""
    provider = deployment.node.find_child("CRProvider")
    functions = [deployment.node.find_child(h) for h in ("onEventHandler", "isCompleteHandler")] + [
        provider.node.find_child(f) for f in ("framework-onEvent", "framework-isComplete", "framework-onTimeout")
    ]
    for function in functions:
        skip_checkov_for_deploy_time_function(function)
        # (Their log groups: settle_functions.)


def replace_copy_handlers(deployment: DockerImageDeployment, *, source: str) -> list[lambda_.CfnFunction]:
    """Runs the library's two handlers on nodejs24.x with our code, inline.

    The L1 attributes are set, not overridden: `code` replaces the whole Code property (an override
    of `Code` would merge and leave the bundled asset's S3Bucket/S3Key beside ZipFile), and cdk-nag
    reads these attributes, so its runtime check sees what is deployed.
    """
    functions = []
    for construct_id, handler in IMAGE_COPY_HANDLERS.items():
        function = deployment.node.find_child(construct_id).node.default_child
        assert isinstance(function, lambda_.CfnFunction)
        function.runtime = NODEJS_RUNTIME.name
        function.handler = handler
        function.code = lambda_.CfnFunction.CodeProperty(zip_file=source)
        functions.append(function)
    return functions


# CDK's provider framework functions (framework-onEvent, -isComplete, -onTimeout) pass one event
# to our handlers and back: 128 MB, Lambda's smallest, is what the Lambda guide recommends "for simple
# Lambda functions, such as those that transform and route events to other AWS services"
# (https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html). Their timeout is CDK's
# (15 minutes, Lambda's maximum): onEvent waits for our handler, which must never be cut first.
FRAMEWORK_MEMORY_MB = 128
FRAMEWORK_FUNCTIONS = ("framework-onEvent", "framework-isComplete", "framework-onTimeout")


def settle_functions(deployment: DockerImageDeployment, scope: Construct) -> None:
    """Every function of the copy states its timeout and memory, and every log group of the copy
    its retention and removal policy (canary_stack/log_groups.py), instead of the library's defaults:
    Lambda's 3 s and 128 MB for the handlers, CDK's 731-day retained log groups for every function,
    and CodeBuild's own /aws/codebuild/<project> group, never expiring and left behind by `cdk destroy`.
    `scope` holds the copy job's log group."""
    provider = deployment.node.find_child("CRProvider")
    functions = {name: deployment.node.find_child(name) for name in IMAGE_COPY_HANDLERS} | {
        name: provider.node.find_child(name) for name in FRAMEWORK_FUNCTIONS
    }
    for name, function in functions.items():
        resource = function.node.default_child
        assert isinstance(resource, lambda_.CfnFunction)
        if name in IMAGE_COPY_HANDLERS:
            resource.timeout = int(HANDLER_TIMEOUT.to_seconds())
            resource.memory_size = HANDLER_MEMORY_MB
        else:
            assert resource.timeout == 900, f"CDK's {name} no longer has a 15-minute timeout: revisit"
            resource.memory_size = FRAMEWORK_MEMORY_MB
        function_logs = function.node.try_find_child("LogGroup")  # @aws-cdk/aws-lambda:useCdkManagedLogGroup
        assert isinstance(function_logs, logs.LogGroup), f"{name} has no CDK-managed log group any more"
        settle(function_logs)

    # The copy job's build log, kept like the app's. CodeBuild writes where LogsConfig says
    # (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-properties-codebuild-project-logsconfig.html),
    # with the project's role; the library's role may write only to /aws/codebuild/<project>.
    build_logs = log_group(scope, "CopyLogs")
    project = deployment.node.find_child("DockerImageDeployProject").node.default_child
    assert isinstance(project, codebuild.CfnProject)
    project.add_property_override(
        "LogsConfig.CloudWatchLogs", {"Status": "ENABLED", "GroupName": build_logs.log_group_name}
    )
    role = deployment.node.find_child("DockerImageDeployRole")
    assert isinstance(role, iam.Role)
    build_logs.grant_write(role)


def skip_copy_when_present(
    deployment: DockerImageDeployment, resource: CfnResource, *, repository: ecr.IRepository, tag: str
) -> None:
    """Names the destination to our onEvent handler, which starts no build when the tag is there.

    ECR refuses a push to an existing tag of an immutable repository, even of the same image
    (ImageTagAlreadyExistsException, https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-edit.html),
    and the library's buildspec pushes unconditionally. A tag named after the content hash already
    holds that content, so a re-run (a revert to an earlier image, a retried deploy, an adopted
    repository) has nothing to copy. The check is ecr:DescribeImages on the one repository.
    """
    resource.add_property_override("DestinationRepositoryName", repository.repository_name)
    resource.add_property_override("DestinationTag", tag)
    on_event = deployment.node.find_child("onEventHandler")
    assert isinstance(on_event, lambda_.Function)
    on_event.add_to_role_policy(
        iam.PolicyStatement(actions=["ecr:DescribeImages"], resources=[repository.repository_arn])
    )


def image_asset_options(platform: ecr_assets.Platform) -> ecr_assets.DockerImageAssetOptions:
    """What the image asset is built from, and so what its hash (the tag production is promoted to) covers.

    * `platform`: the CDK CLI builds every image asset with BUILDX_NO_DEFAULT_ATTESTATIONS=1
      (tests/stack/test_images.py checks the pinned CLI), so the pushed image is one single-platform
      manifest, not an index with a provenance attestation, which the copy's plain `docker pull` on
      x86 CodeBuild could not resolve for an arm64 image.
    * the build context is what crystal_src/.dockerignore lets through (an allow-list: code_hash.txt
      and the Crystal sources), read in Docker's own syntax (IgnoreMode.DOCKER), so editor swap
      files, __pycache__/ or a stray file never change the hash of an image nobody changed;
    * `follow_symlinks=NEVER`: a symlink is hashed (and copied) as the link, never as the file it
      points to. The CDK's fingerprint follows links that leave the folder by default
      (SymlinkFollowMode.EXTERNAL in aws-cdk-lib 2.275's core/lib/fs/fingerprint.js, although the
      API reference says NEVER), so a link out of the repository would hash a file nobody committed.
    """
    return ecr_assets.DockerImageAssetOptions(
        platform=platform,
        follow_symlinks=SymlinkFollowMode.NEVER,
        ignore_mode=IgnoreMode.DOCKER,
    )


def directory_source(directory: Path, *, platform: ecr_assets.Platform) -> Source:
    """`Source.directory(path, assetOptions)` with the asset options the Python wrapper cannot pass."""
    options = image_asset_options(platform)
    return typing.cast(Source, jsii.sinvoke(Source, "directory", [str(directory), options]))


@jsii.implements(IStableStringProducer)
class _Later:
    """A string known only after the construct that computes it exists (the asset hash)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.value: str | None = None

    def produce(self) -> str:
        if self.value is None:
            raise RuntimeError(f"{self.what} was never set")
        return self.value


class ImagePublication(Construct):
    """Builds the image in `directory` for `platform` and copies it to `repository:<its asset hash>`,
    once per image content."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        repository: ecr.IRepository,
        directory: Path,
        platform: ecr_assets.Platform,
    ) -> None:
        super().__init__(scope, id)
        # The destination tag is the asset's hash, which exists only once the library has made the
        # asset inside the deployment: the tag is resolved at synthesis.
        tag = _Later("the image asset hash")
        self.deployment = DockerImageDeployment(
            self,
            "Copy",
            source=directory_source(directory, platform=platform),
            destination=Destination.ecr(repository, tag=Lazy.string(tag)),
        )
        asset = self.deployment.node.find_child("asset")
        assert isinstance(asset, ecr_assets.DockerImageAsset)
        self.content_hash: str = asset.asset_hash
        tag.value = self.content_hash
        self.tag = self.content_hash
        self.custom_resource = stabilize(self.deployment, logical_id=f"{id}ImageCopy", content_hash=self.content_hash)
        self.handlers = replace_copy_handlers(self.deployment, source=IMAGE_COPY_SOURCE.read_text())
        settle_functions(self.deployment, self)
        skip_copy_when_present(self.deployment, self.custom_resource, repository=repository, tag=self.tag)
        acknowledge_library_findings(self.deployment)


def named_repository(
    scope: Construct, id: str, *, name: str, mutable_tags: tuple[str, ...], disposable: bool = False
) -> ecr.Repository:
    """The repository, created and owned by the stack.

    * `RetainExceptOnCreate` (CDK: RETAIN_ON_UPDATE_OR_DELETE): released images outlive the stack,
      but a create that rolls back deletes it, so the retry does not fail on "already exists"
      (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html).
    * EmptyOnDelete: that delete succeeds although the copy may already have pushed an image
      (https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ecr-repository.html).
      CDK's L2 only allows it with DESTROY, so it is set on the L1 resource.
    * IMMUTABLE_WITH_EXCLUSION: every tag is immutable except the workshop's moving ones
      (https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-ecr-repository-imagetagmutabilityexclusionfilter.html).
    * `disposable`: DESTROY instead, images included, for a repository nobody pulls from (the deploy
      check's own); never the user's.
    """
    repository = ecr.Repository(
        scope,
        id,
        repository_name=name,
        image_scan_on_push=True,
        image_tag_mutability=ecr.TagMutability.IMMUTABLE_WITH_EXCLUSION,
        image_tag_mutability_exclusion_filters=[
            ecr.ImageTagMutabilityExclusionFilter.wildcard(tag) for tag in mutable_tags
        ],
        encryption=ecr.RepositoryEncryption.AES_256,
        removal_policy=RemovalPolicy.DESTROY if disposable else RemovalPolicy.RETAIN_ON_UPDATE_OR_DELETE,
    )
    cfn = repository.node.default_child
    assert isinstance(cfn, ecr.CfnRepository)
    cfn.empty_on_delete = True
    # checkov 3.3.30 accepts only IMMUTABLE (CKV_AWS_51) and a KMS key (CKV_AWS_136).
    skip_checkov(
        repository,
        "CKV_AWS_51",
        "IMMUTABLE_WITH_EXCLUSION: every tag is immutable except the workshop's epoch and vanilla, "
        "which move to new images by design; what runs is named by an immutable asset-hash tag",
    )
    skip_checkov(
        repository,
        "CKV_AWS_136",
        "ECR encrypts every image at rest (AES-256); a KMS key would add a KMS call to every pull, "
        "and changing the encryption replaces the repository with its images",
    )
    return repository


CODE_HASH_FILE = "code_hash.txt"  # crystal_src/src/crystal_backend.cr reads it at compile time


class CanaryImages(Construct):
    """The repository, the canary's copy in it, the image each version runs, and the moving tags.

    `adopt_repository`: use the existing repository called `repository_name` (say one the workshop
    made by hand) instead of creating it. The stack then cannot enforce, and a reviewer cannot see,
    what it would otherwise guarantee: that hash tags are immutable (a MUTABLE repository lets a
    push replace `repo:<hash>` under a running service), scan on push, AES-256 encryption, and
    what happens to it on a failed create or `cdk destroy` (it is never the stack's to delete).
    Make it IMMUTABLE_WITH_EXCLUSION for the moving tags by hand to keep the release model sound.
    `disposable`: see `named_repository` (ignored for an adopted repository, never the stack's).
    `production_directory`: build production's image from this directory too, instead of naming an
    image already in the repository (`production_image` must then be None). Only for a stack whose
    repository starts empty and whose versions must differ: the integration test's. The app never
    builds production: production runs an image the canary ran.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        repository_name: str,
        canary_tag: str,
        production_tag: str,
        production_image: str | None,
        cpu_architecture: CpuArchitecture,
        adopt_repository: bool = False,
        directory: Path = CRYSTAL_SRC,
        production_directory: Path | None = None,
        disposable: bool = False,
    ) -> None:
        super().__init__(scope, id)
        if (production_image is None) == (production_directory is None):
            raise ValueError("give either production_image (an image in the repository) or production_directory")
        platform, self.cpu_architecture = PLATFORMS[cpu_architecture]
        self.repository: ecr.IRepository = (
            ecr.Repository.from_repository_name(self, "Repository", repository_name)
            if adopt_repository
            else named_repository(
                self,
                "Repository",
                name=repository_name,
                mutable_tags=(canary_tag, production_tag),
                disposable=disposable,
            )
        )
        self.canary_publication = ImagePublication(
            self, "Canary", repository=self.repository, directory=directory, platform=platform
        )
        # Each version runs an immutable tag: the template names exactly the image that runs.
        self.canary_hash = self.canary_publication.content_hash
        # What the canary answers as its `commit` (the service embeds the file at compile time), so
        # the tools can tell its answers from production's.
        self.canary_commit = (directory / CODE_HASH_FILE).read_text(encoding="utf-8").strip()
        self.canary_image = ecs.ContainerImage.from_ecr_repository(self.repository, self.canary_hash)
        self.production_publication: ImagePublication | None = None
        if production_directory is not None:
            self.production_publication = ImagePublication(
                self, "Production", repository=self.repository, directory=production_directory, platform=platform
            )
            self.production_hash = self.production_publication.content_hash
        else:
            assert production_image is not None
            self.production_hash = production_image
        self.production_image = ecs.ContainerImage.from_ecr_repository(self.repository, self.production_hash)

        tagger = ImageTagger(self, "Tagger", repository=self.repository)
        self.canary_tag = tagger.tag("CanaryTag", source_tag=self.canary_hash, tag=canary_tag)
        self.production_tag = tagger.tag("ProductionTag", source_tag=self.production_hash, tag=production_tag)
        # Both only after the copy: on a first deploy (productionImage = the canary's hash, as
        # committed) production's image is the one the copy has just pushed.
        for mover in (self.canary_tag, self.production_tag):
            mover.node.add_dependency(self.canary_publication.custom_resource)
        if self.production_publication is not None:
            self.production_tag.node.add_dependency(self.production_publication.custom_resource)
