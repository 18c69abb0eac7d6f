"""The images and the release model, on synthesized templates and the cloud assembly.

Each image is named by its CDK asset hash, an immutable tag: the canary runs `repo:<canary hash>`,
production runs `repo:<productionImage>` (committed in cdk.json). Promotion is a cdk.json change
that builds and copies nothing. The moving tags `epoch`/`vanilla` follow by BatchGetImage + PutImage.
"""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from support.configurations import PIPELINE_CONTEXT
from support.synthesis import CLI_CONTEXT, ROOT, Synthesis, cdk_json_context, synthesize

from canary_stack import cdk_app
from canary_stack.config import CanaryConfig
from canary_stack.image_tags import HANDLERS
from canary_stack.stack import CanaryStack

HASH = re.compile(r"[0-9a-f]{64}")
COMMITTED_PRODUCTION_IMAGE = cdk_json_context()["productionImage"]
OTHER_HASH = "0123456789abcdef" * 4  # production before a promotion: some earlier canary's image
ROUTERS = {"appmesh": {"trafficRouter": "appmesh"}, "alb": {"trafficRouter": "alb"}}  # explicit: defaults move


def resource(s: Synthesis, logical_prefix: str, type_: str) -> tuple[str, dict]:
    (found,) = [(k, v) for k, v in s.resources(type_).items() if k.startswith(logical_prefix)]
    return found


def app_image_tag(s: Synthesis, version: str) -> str:
    """The tag in the app container's image reference: `<repository uri>:<tag>`."""
    _, task = resource(s, f"{version}Task", "AWS::ECS::TaskDefinition")
    (app,) = [c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == "app"]
    last = app["Image"]["Fn::Join"][1][-1]
    assert isinstance(last, str) and ":" in last, app["Image"]
    return last.rsplit(":", 1)[1]


def repository_id(s: Synthesis) -> str:
    (logical_id,) = s.resources("AWS::ECR::Repository") or ["(adopted)"]
    return logical_id


def docker_assets(s: Synthesis) -> dict[str, dict]:
    return json.loads((s.outdir / "CrystalCanary.assets.json").read_text())["dockerImages"]


def canary_hash(s: Synthesis) -> str:
    (only,) = docker_assets(s)
    return only


def changed(a: dict, b: dict) -> list[str]:
    ra, rb = a["Resources"], b["Resources"]
    return sorted(k for k in set(ra) | set(rb) if ra.get(k) != rb.get(k))


@pytest.fixture(scope="module")
def default(synth) -> Synthesis:
    return synth(canaryWeight="10")


@pytest.fixture(scope="module")
def promoted_hash(default) -> str:
    """What `make promote` writes: the canary's asset hash (x86_64, the committed crystal_src)."""
    return canary_hash(default)


# --- which image each version runs -------------------------------------------------------------


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_production_runs_the_committed_hash_never_a_moving_tag(synth, router):
    s = synth(canaryWeight="10", **ROUTERS[router])
    tag = app_image_tag(s, "Production")
    assert tag == COMMITTED_PRODUCTION_IMAGE and HASH.fullmatch(tag)
    assert tag not in ("vanilla", "epoch")
    # Whatever productionImage says is what the template names, and nothing else decides it.
    assert app_image_tag(synth(canaryWeight="10", productionImage=OTHER_HASH, **ROUTERS[router]), "Production") == (
        OTHER_HASH
    )


def test_canary_runs_its_own_asset_hash_which_the_copy_pushes(default):
    h = canary_hash(default)
    assert HASH.fullmatch(h)
    assert app_image_tag(default, "Canary") == h
    copy = default.template["Resources"]["CanaryImageCopy"]["Properties"]
    assert copy["ImageContentHash"] == h
    # Our onEvent handler is told the destination, to start no build when the tag is there already.
    assert copy["DestinationTag"] == h
    assert copy["DestinationRepositoryName"] == {"Ref": repository_id(default)}
    _, project = resource(default, "ImagesCanaryCopyDockerImageDeployProject", "AWS::CodeBuild::Project")
    buildspec = json.dumps(project["Properties"]["Source"]["BuildSpec"])
    assert f':{h}\\",\\n        \\"docker push ' in buildspec, "docker tag ... <repo>:<hash>, then push it"
    assert ":epoch" not in buildspec and ":vanilla" not in buildspec


# --- promotion and determinism -----------------------------------------------------------------


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_promotion_builds_and_copies_nothing_and_changes_only_production(synth, promoted_hash, router):
    before = synth(canaryWeight="0", productionImage=OTHER_HASH, **ROUTERS[router])
    after = synth(canaryWeight="0", productionImage=promoted_hash, **ROUTERS[router])
    for s in (before, after):
        # One image asset (the canary's), one copy job, one CodeBuild project: promotion adds none.
        assert list(docker_assets(s)) == [promoted_hash]
        assert list(s.resources("AWS::CloudFormation::CustomResource")) == ["CanaryImageCopy"]
        assert len(s.resources("AWS::CodeBuild::Project")) == 1
    assert set(after.template["Resources"]) == set(before.template["Resources"])
    diff = changed(before.template, after.template)
    production_task, _ = resource(after, "ProductionTask", "AWS::ECS::TaskDefinition")
    vanilla, _ = resource(after, "ImagesTaggerProductionTag", "Custom::ImageTag")
    assert diff == sorted([production_task, vanilla])
    assert app_image_tag(after, "Production") == promoted_hash


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_after_promotion_the_same_inputs_give_the_same_bytes(synth, tmp_path, promoted_hash, router):
    """After `make promote` and its deploy, the next ordinary deploy changes nothing: two separate
    syntheses of the promoted cdk.json are byte-identical."""
    first = synth(canaryWeight="0", productionImage=promoted_hash, **ROUTERS[router])
    second = synthesize(tmp_path, canaryWeight="0", productionImage=promoted_hash, **ROUTERS[router])
    for name in ("CrystalCanary.template.json", "CrystalCanary.assets.json"):
        assert (first.outdir / name).read_bytes() == (second.outdir / name).read_bytes()


@pytest.mark.parametrize("router", sorted(ROUTERS))
def test_after_promotion_a_weight_step_changes_one_resource(synth, promoted_hash, router):
    a = synth(canaryWeight="0", productionImage=promoted_hash, **ROUTERS[router]).template
    b = synth(canaryWeight="10", productionImage=promoted_hash, **ROUTERS[router]).template
    assert len(changed(a, b)) == 1


# --- the repository ----------------------------------------------------------------------------


def test_repository_retains_except_on_create_and_empties_on_delete(default):
    """RetainExceptOnCreate: a create that rolls back deletes the repository, so a retry does not fail
    on "already exists"; every later operation keeps it (released images outlive the stack)
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html
    EmptyOnDelete: that delete succeeds although the copy may already have pushed an image
    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-ecr-repository.html"""
    repo = default.one("AWS::ECR::Repository")
    assert repo["DeletionPolicy"] == "RetainExceptOnCreate"
    assert repo["UpdateReplacePolicy"] == "Retain"
    assert repo["Properties"]["EmptyOnDelete"] is True
    assert repo["Properties"]["RepositoryName"] == "ecsdemo-crystal"
    assert repo["Properties"]["ImageScanningConfiguration"] == {"ScanOnPush": True}


def test_repository_tags_are_immutable_except_the_moving_ones(default, synth):
    """IMMUTABLE_WITH_EXCLUSION with WILDCARD filters (pattern [0-9a-zA-Z._*-]{1,128}, at most 5)
    https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-ecr-repository-imagetagmutabilityexclusionfilter.html
    https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImageTagMutability.html"""

    def mutability(s: Synthesis) -> tuple[str, list[tuple[str, str]]]:
        props = s.one("AWS::ECR::Repository")["Properties"]
        filters = [
            (f["ImageTagMutabilityExclusionFilterType"], f["ImageTagMutabilityExclusionFilterValue"])
            for f in props["ImageTagMutabilityExclusionFilters"]
        ]
        return props["ImageTagMutability"], filters

    assert mutability(default) == ("IMMUTABLE_WITH_EXCLUSION", [("WILDCARD", "epoch"), ("WILDCARD", "vanilla")])
    # The exclusions follow the moving tags' names; a hash tag never matches one (no '*').
    renamed = synth(canaryWeight="10", imageTag="next", productionTag="stable")
    assert mutability(renamed) == ("IMMUTABLE_WITH_EXCLUSION", [("WILDCARD", "next"), ("WILDCARD", "stable")])
    movers = {p["Properties"]["Tag"] for p in renamed.resources("Custom::ImageTag").values()}
    assert movers == {"next", "stable"}


def test_adopting_an_existing_repository_creates_none_and_uses_it_by_name(synth):
    s = synth(canaryWeight="10", adoptRepository="true")
    assert s.resources("AWS::ECR::Repository") == {}
    for version in ("Canary", "Production"):
        _, task = resource(s, f"{version}Task", "AWS::ECS::TaskDefinition")
        (app,) = [c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == "app"]
        assert "/ecsdemo-crystal:" in json.dumps(app["Image"])
    for mover in s.resources("Custom::ImageTag").values():
        assert mover["Properties"]["RepositoryName"] == "ecsdemo-crystal"
    assert s.template["Resources"]["CanaryImageCopy"]["Properties"]["DestinationRepositoryName"] == "ecsdemo-crystal"
    # Everything else is the same stack: tags, copy and versions.
    assert app_image_tag(s, "Production") == COMMITTED_PRODUCTION_IMAGE


def test_a_disposable_repository_goes_with_the_stack_images_included(tmp_path):
    """The deploy check's own repository (CanaryStack(disposable_repository=True)); never the app's."""
    app = cdk_app.create_app(context={**cdk_json_context(), **CLI_CONTEXT}, outdir=str(tmp_path))
    config = CanaryConfig.from_context(app.node.try_get_context)
    CanaryStack(app, "Disposable", config=config, disposable_repository=True)
    repo = next(
        v
        for v in app.synth().get_stack_by_name("Disposable").template["Resources"].values()
        if v["Type"] == "AWS::ECR::Repository"
    )
    assert (repo["DeletionPolicy"], repo["UpdateReplacePolicy"]) == ("Delete", "Delete")
    assert repo["Properties"]["EmptyOnDelete"] is True
    assert repo["Properties"]["ImageTagMutability"] == "IMMUTABLE_WITH_EXCLUSION"


# --- the tag movers ----------------------------------------------------------------------------


def test_moving_tags_point_at_the_canary_and_production_images(default):
    """epoch -> the canary's image, vanilla -> production's, after the canary copy; production's
    service starts only after vanilla moved (the mover fails the deploy if production's image is
    absent). Retagging is BatchGetImage + PutImage, as ECR documents it
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-retag.html"""
    movers = default.resources("Custom::ImageTag")
    by_tag = {v["Properties"]["Tag"]: (k, v) for k, v in movers.items()}
    assert set(by_tag) == {"epoch", "vanilla"}
    tagger, _ = resource(default, "ImagesTaggerFunction", "AWS::Lambda::Function")
    repo = repository_id(default)
    expected_source = {"epoch": canary_hash(default), "vanilla": COMMITTED_PRODUCTION_IMAGE}
    for tag, (_, mover) in by_tag.items():
        assert mover["Properties"] == {
            "ServiceToken": {"Fn::GetAtt": [tagger, "Arn"]},
            "RepositoryName": {"Ref": repo},
            "SourceTag": expected_source[tag],
            "Tag": tag,
        }
        assert "CanaryImageCopy" in mover["DependsOn"]
    _, production = resource(default, "ProductionService", "AWS::ECS::Service")
    assert by_tag["vanilla"][0] in production["DependsOn"]
    _, canary = resource(default, "CanaryService", "AWS::ECS::Service")
    assert "CanaryImageCopy" in canary["DependsOn"]


def test_tag_mover_role_may_retag_this_repository_and_log_nothing_more(default):
    """https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_PutImage.html and
    https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_BatchGetImage.html"""
    _, function = resource(default, "ImagesTaggerFunction", "AWS::Lambda::Function")
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    role = default.template["Resources"][role_id]["Properties"]
    assert "ManagedPolicyArns" not in role
    (policy,) = role["Policies"]
    logs_id = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert policy["PolicyDocument"]["Statement"] == [
        {
            "Action": ["ecr:BatchGetImage", "ecr:PutImage"],
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [repository_id(default), "Arn"]},
        },
        {
            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
            "Effect": "Allow",
            "Resource": {"Fn::GetAtt": [logs_id, "Arn"]},
        },
    ]
    attached = [
        k for k, v in default.resources("AWS::IAM::Policy").items() if {"Ref": role_id} in v["Properties"]["Roles"]
    ]
    assert attached == []


# --- Lambda code and runtimes ------------------------------------------------------------------


def test_handlers_are_our_files_inline_on_nodejs24(default):
    """Code is ZipFile only: CloudFormation writes it as index.js, so the handler is index.<export>
    https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-properties-lambda-function-code.html"""
    expected = {
        "ImagesCanaryCopyonEventHandler": ("index.onEvent", "image_copy.js"),
        "ImagesCanaryCopyisCompleteHandler": ("index.isComplete", "image_copy.js"),
        "ImagesTaggerFunction": ("index.handler", "tag_image.js"),
    }
    for prefix, (handler, file) in expected.items():
        _, function = resource(default, prefix, "AWS::Lambda::Function")
        props = function["Properties"]
        assert props["Runtime"] == "nodejs24.x"
        assert props["Handler"] == handler
        assert props["Code"] == {"ZipFile": (HANDLERS / file).read_text()}, "ZipFile only, no S3Bucket/S3Key"


def test_copy_handler_may_check_the_destination_and_nothing_else_new(default):
    _, function = resource(default, "ImagesCanaryCopyonEventHandler", "AWS::Lambda::Function")
    role_id = function["Properties"]["Role"]["Fn::GetAtt"][0]
    statements = [
        st
        for policy in default.resources("AWS::IAM::Policy").values()
        if {"Ref": role_id} in policy["Properties"]["Roles"]
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
    ]
    actions = sorted(
        a for st in statements for a in ([st["Action"]] if isinstance(st["Action"], str) else st["Action"])
    )
    assert actions == ["codebuild:StartBuild", "ecr:DescribeImages"]
    (describe,) = [st for st in statements if st["Action"] == "ecr:DescribeImages"]
    assert describe["Resource"] == {"Fn::GetAtt": [repository_id(default), "Arn"]}


# From the AWS Lambda runtimes page, https://docs.aws.amazon.com/lambda/latest/dg/lambda-runtimes.html
# (also tabulated at https://endoflife.date/aws-lambda): the date each runtime is deprecated.
LAMBDA_DEPRECATION = {
    "nodejs24.x": date(2028, 4, 30),
    "nodejs22.x": date(2027, 4, 30),
    "nodejs20.x": date(2026, 4, 30),
    "nodejs16.x": date(2024, 6, 12),
    "python3.14": date(2029, 6, 30),
    "python3.13": date(2029, 6, 30),
}
NOT_BEFORE = date(2028, 1, 1)


def test_the_runtime_table_rejects_what_it_must():
    assert LAMBDA_DEPRECATION["nodejs22.x"] < NOT_BEFORE  # nodejs22.x is not good enough
    assert LAMBDA_DEPRECATION["nodejs24.x"] >= NOT_BEFORE


@pytest.mark.parametrize(
    "context",
    [
        {"canaryWeight": "10", "trafficRouter": "appmesh"},
        {"canaryWeight": "10", "trafficRouter": "alb"},
        PIPELINE_CONTEXT,
    ],
    ids=["appmesh", "alb", "pipeline"],
)
def test_no_lambda_on_a_runtime_deprecated_before_2028(synth, context):
    """Every function in every template, CDK's own included (custom resource provider framework,
    the VPC default security group provider): none on a runtime Lambda deprecates before 2028."""
    s = synth(**context)
    runtimes: dict[str, str] = {}
    for stack, template in s.templates.items():
        resources = template["Resources"]
        for logical_id, res in resources.items():
            if res["Type"] == "AWS::Lambda::Function":
                runtimes[f"{stack}/{logical_id}"] = res["Properties"]["Runtime"]
            # Every custom resource is served by a function of this template, so its runtime is above.
            if res["Type"].startswith("Custom::") or res["Type"] == "AWS::CloudFormation::CustomResource":
                token = res["Properties"]["ServiceToken"]["Fn::GetAtt"][0]
                assert resources[token]["Type"] == "AWS::Lambda::Function", (logical_id, token)
    assert runtimes
    late = {k: v for k, v in runtimes.items() if LAMBDA_DEPRECATION.get(v, date.min) < NOT_BEFORE}
    assert late == {}


# --- architecture ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "architecture, platform, cpu", [("x86_64", "linux/amd64", "X86_64"), ("arm64", "linux/arm64", "ARM64")]
)
def test_image_platform_and_task_cpu_always_agree(synth, architecture, platform, cpu):
    context = {} if architecture == "x86_64" else {"cpuArchitecture": architecture}
    s = synth(canaryWeight="10", **context)
    (asset,) = docker_assets(s).values()
    # Only the directory and the platform: no `outputs` that could push an index or attestations.
    assert asset["source"] == {"directory": asset["source"]["directory"], "platform": platform}
    for version in ("Canary", "Production"):
        _, task = resource(s, f"{version}Task", "AWS::ECS::TaskDefinition")
        assert task["Properties"]["RuntimePlatform"] == {"CpuArchitecture": cpu, "OperatingSystemFamily": "LINUX"}


def test_another_architecture_is_another_image(synth, default):
    arm = synth(canaryWeight="10", cpuArchitecture="arm64")
    assert canary_hash(arm) != canary_hash(default)
    assert app_image_tag(arm, "Canary") == canary_hash(arm)


def test_pinned_cdk_cli_builds_images_without_default_attestations():
    """The copy's `docker pull` on x86 CodeBuild needs a single-platform manifest: an image index
    carrying a provenance attestation has no linux/amd64 entry for an arm64 image. The CDK CLI
    builds every image asset with BUILDX_NO_DEFAULT_ATTESTATIONS=1 (aws/aws-cdk#30258;
    https://docs.docker.com/build/building/variables/#buildx_no_default_attestations); the
    DockerImageAssetOptions have no switch for it. This pins the CLI the project runs."""
    cli = (ROOT / "node_modules" / "aws-cdk" / "lib" / "index.js").read_text()
    start = cli.index("async build(options) {")
    build = cli[start : cli.index("async login(", start)]
    assert '"build",' in build and '"--platform", options.platform' in build
    assert re.search(r"env:\s*\{\s*BUILDX_NO_DEFAULT_ATTESTATIONS:\s*\"1\"", build)
