"""Make the canary's image production, through git: `make promote [WEIGHT=100] [UNVERIFIED=1]`.

    python -m canary_stack.ops.promote [--weight N] [--unverified] [--stack-name NAME]

1. checks that the image's files (crystal_src/: the Dockerfile, .dockerignore, code_hash.txt and
   the Crystal sources) are exactly HEAD's: nothing changed, staged, untracked, ignored or hidden
   from `git status` (skip-worktree);
2. reads the deployed stack (CloudFormation DescribeStacks; the only AWS call it makes): its outputs
   CanaryImage, CpuArchitecture and CanaryWeight. Without AWS credentials it stops here, unless
   --unverified, which skips this look and says so in the commit message it prints;
3. synthesizes the working tree offline (no AWS account is contacted) and takes the canary image's
   asset hash from the cloud assembly (`dockerImages` has exactly one entry, keyed by that hash);
4. refuses, in one line saying what differs, unless the deployed canary runs exactly that hash, for
   the same CPU architecture, at the weight a rollout ends on (--weight, default 100);
5. rewrites cdk.json in one step (a temporary file renamed over it): context `productionImage` :=
   that hash, `canaryWeight` := 0, nothing else changed; a failed write leaves it as it was;
6. prints the offline diff of the working tree against HEAD and the `git commit` to run.

Deploying it is an ordinary deploy (or the merge of the pull request): production rolls onto the
canary's exact image, then the weight returns to 0. Undo is the revert of that commit. When
cdk.json already says so, there is nothing to promote (exit 0).

Exit codes: 0 promoted or nothing to promote, 1 synthesis, diff or write failed, 2 refused (bad
input, a context file this cannot read, a deployed stack that does not run this canary), 130
interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from canary_stack.constants import (
    CRYSTAL_SRC,
    OUTPUT_CANARY_COMMIT,
    OUTPUT_CANARY_IMAGE,
    OUTPUT_CANARY_WEIGHT,
    OUTPUT_CPU_ARCHITECTURE,
    PROJECT_ROOT,
    STACK_NAME,
)
from canary_stack.context import CDK_JSON, parse_cdk_json, read_context
from canary_stack.ops import cdk_cli, git, offline_diff
from canary_stack.ops.cli import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    Failed,
    UsageError,
    bounded_int,
    one_line,
    parse_stack_name,
)
from canary_stack.ops.cloud import aws_region
from canary_stack.ops.command import Command
from canary_stack.ops.files import escape_lone_surrogates, write_atomically
from canary_stack.text import shorten

ASSET_HASH = re.compile(r"[0-9a-f]{64}")
PRODUCTION_IMAGE = "productionImage"
WEIGHT = "canaryWeight"
ROLLOUT_END = 100  # the weight a rollout ends on: the canary takes every request before it is promoted
IMAGE_FOLDER = CRYSTAL_SRC.relative_to(PROJECT_ROOT).as_posix()
# What the image's asset hash covers: the Dockerfile and .dockerignore (the CDK always hashes them)
# and what .dockerignore lets through (crystal_src/.dockerignore; tests/stack/test_image_context.py
# proves the two agree).
IMAGE_PATHSPECS = [
    f"{IMAGE_FOLDER}/Dockerfile",
    f"{IMAGE_FOLDER}/.dockerignore",
    f"{IMAGE_FOLDER}/code_hash.txt",
    f":(glob){IMAGE_FOLDER}/src/**/*.cr",
    f":(glob,exclude){IMAGE_FOLDER}/src/**/.*",
]
# A deployed stack whose outputs describe what runs: one in a "last known stable state", which the
# RollbackStack API reference lists as CREATE_COMPLETE, UPDATE_COMPLETE, UPDATE_ROLLBACK_COMPLETE,
# IMPORT_COMPLETE and IMPORT_ROLLBACK_COMPLETE
# (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_RollbackStack.html). In
# progress, failed, or ROLLBACK_COMPLETE (a create that failed: nothing runs), they do not.
SETTLED = (
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT_COMPLETE",
    "IMPORT_ROLLBACK_COMPLETE",
)


def canary_image_hash(assembly: Path, stack: str = STACK_NAME) -> str:
    """The asset hash of the one Docker image in `stack`'s asset manifest in a cloud assembly."""
    manifest = assembly / f"{stack}.assets.json"
    try:
        document = json.loads(manifest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"the cloud assembly has no {manifest.name}") from None
    except (OSError, ValueError, RecursionError) as err:
        raise UsageError(f"cannot read {manifest.name}: {one_line(err)}") from None
    images = document.get("dockerImages") if isinstance(document, dict) else None
    if not isinstance(images, dict) or len(images) != 1:
        count = len(images) if isinstance(images, dict) else 0
        raise UsageError(
            f"{manifest.name} must list exactly one Docker image (the canary's), found {count}: "
            f"{shorten(', '.join(images) if isinstance(images, dict) else images)}"
        )
    (asset_hash,) = images
    if not ASSET_HASH.fullmatch(asset_hash):
        raise UsageError(f"the canary image's asset hash must be 64 lowercase hex digits, got {shorten(asset_hash)}")
    return asset_hash


def promoted_cdk_json(text: str, asset_hash: str) -> str | None:
    """cdk.json's text with productionImage := asset_hash and canaryWeight := 0, every other byte
    as a 2-space JSON dump of the same document writes it; None when it already says so.

    productionImage is read as text, not with the app's parser, so any earlier form of it (a hash,
    or a word such as "pinned") is replaced.
    """
    context = parse_cdk_json(text)  # one-line errors for a malformed file; numbers as the CLI sees them
    weight = context.get(WEIGHT, 0)
    if context.get(PRODUCTION_IMAGE) == asset_hash and weight == 0 and not isinstance(weight, bool):
        return None
    document = json.loads(text)  # as written (10.0 stays 10.0), in order
    old = document.setdefault("context", {})
    new: dict[str, Any] = {}
    if WEIGHT not in old:
        new[WEIGHT] = 0
        new[PRODUCTION_IMAGE] = asset_hash
    for key, value in old.items():
        if key == PRODUCTION_IMAGE:
            continue
        new[key] = 0 if key == WEIGHT else value
        if key == WEIGHT:
            new[PRODUCTION_IMAGE] = asset_hash  # next to the weight, where a reviewer reads it
    document["context"] = new
    return escape_lone_surrogates(json.dumps(document, indent=2, ensure_ascii=False)) + "\n"


def check_image_committed(root: Path) -> None:
    """The canary ran a committed image: any file of the image's build context that is not HEAD's
    would give a hash no canary ever ran, and production would take an image nobody tested."""
    if not git.is_repository(root):
        raise UsageError(f"{root} is not a git checkout: promote changes cdk.json through a git commit")
    try:
        paths = git.unclean_paths(root, IMAGE_PATHSPECS)
    except git.GitError as err:
        raise UsageError(f"cannot ask git whether {IMAGE_FOLDER}/ is committed: {err}") from None
    if paths:
        shown = paths[0] + (f" and {len(paths) - 1} more" if len(paths) > 1 else "")
        raise UsageError(
            f"{IMAGE_FOLDER}/ has files that are not HEAD's ({shorten(shown)}; changed, untracked, ignored or "
            "skip-worktree): the canary ran the committed image; commit, stash or remove them, then promote"
        )


# ------------------------------------------------------------------ the deployed stack


def cloudformation_client(environ: Mapping[str, str] = os.environ) -> Any | None:
    """A CloudFormation client from the SDK's credential chain, or None when it finds no credentials."""
    import boto3  # only here: nothing else of promote needs the SDK

    # The region the CDK CLI deploys to, found as the rollout finds it (one home: ops/cloud.py).
    region = aws_region(environ)
    session = boto3.session.Session(region_name=region)
    if session.get_credentials() is None:
        return None
    return session.client("cloudformation", region_name=region)


def deployed_outputs(client: Any, stack: str) -> dict[str, str]:
    """The stack's outputs by key (cloudformation:DescribeStacks). UsageError (one line) when there
    is no such stack, when it is not settled, or when the call fails (credentials, permissions)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        answer = client.describe_stacks(StackName=stack)
    except ClientError as err:
        error = err.response.get("Error", {})
        # "If the stack doesn't exist, a ValidationError is returned."
        # (https://docs.aws.amazon.com/AWSCloudFormation/latest/APIReference/API_DescribeStacks.html)
        if error.get("Code") == "ValidationError" and "does not exist" in str(error.get("Message", "")):
            raise UsageError(
                f"no stack {stack} is deployed in {client.meta.region_name}: promote names only an image a deployed "
                "canary runs; deploy the canary first (make deploy), or check AWS_REGION"
            ) from None
        raise UsageError(f"cannot read the deployed stack {stack}: {one_line(err)}") from None
    except BotoCoreError as err:
        raise UsageError(f"cannot read the deployed stack {stack}: {one_line(err)}") from None
    (description,) = answer["Stacks"]
    status = description.get("StackStatus", "")
    if status not in SETTLED:
        raise UsageError(
            f"the deployed stack {stack} is {status}: its outputs do not say what runs; wait for it to settle and promote again"
        )
    return {output["OutputKey"]: output.get("OutputValue", "") for output in description.get("Outputs", [])}


def check_deployed_canary(
    outputs: Mapping[str, str], *, asset_hash: str, architecture: str, weight: int, stack: str
) -> None:
    """UsageError saying what differs unless the deployed canary runs `asset_hash` for `architecture`
    at `weight`."""
    needed = (OUTPUT_CANARY_IMAGE, OUTPUT_CPU_ARCHITECTURE, OUTPUT_CANARY_WEIGHT)
    missing = [name for name in needed if name not in outputs]
    if missing:
        raise UsageError(
            f"the deployed stack {stack} has no output {', '.join(missing)}: it predates promote's check; "
            "deploy the canary with this version first (make deploy)"
        )
    deployed_architecture = outputs[OUTPUT_CPU_ARCHITECTURE]
    if deployed_architecture != architecture:
        raise UsageError(
            f"the deployed canary runs cpuArchitecture={shorten(deployed_architecture)}, this checkout builds "
            f"cpuArchitecture={architecture}: the hash would name an image no canary ran"
        )
    deployed_image = outputs[OUTPUT_CANARY_IMAGE]
    if deployed_image != asset_hash:
        raise UsageError(
            f"the deployed canary runs image {shorten(deployed_image[:12] if ASSET_HASH.fullmatch(deployed_image) else deployed_image)}, "
            f"this checkout builds {asset_hash[:12]}: deploy and roll out this canary first, or check out the commit it ran"
        )
    deployed_weight = outputs[OUTPUT_CANARY_WEIGHT]
    if deployed_weight.strip() != str(weight):
        raise UsageError(
            f"the deployed canary takes canaryWeight {shorten(deployed_weight)}, promote expects {weight} "
            f"(the end of a rollout; give --weight, or WEIGHT= to make promote, for another)"
        )


def commit_command(asset_hash: str, *, unverified: bool, canary_commit: str | None = None) -> str:
    """The `git commit` to run, its message quoted for a shell: what was promoted, and how it was checked."""
    message = f"Promote the canary image {asset_hash[:12]} to production"
    if canary_commit and re.fullmatch(r"[A-Za-z0-9._-]{1,64}", canary_commit):
        message += f" (the canary answers commit {canary_commit})"
    if unverified:
        message = f"unverified: {message}; the deployed stack was not read"
    return f"git commit -m {shlex.quote(message)} {CDK_JSON}"


class Promote(Command):
    name = "promote"
    prog = "python -m canary_stack.ops.promote"
    description = __doc__.split("\n\n", 2)[2]
    interrupted_message = f"check `git diff {CDK_JSON}`"

    def __init__(
        self,
        root: Path = PROJECT_ROOT,
        *,
        cloudformation: Callable[[], Any | None] = cloudformation_client,
        **streams: TextIO | None,
    ) -> None:
        super().__init__(**streams)
        self.root = root
        self.cloudformation = cloudformation

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--weight",
            type=bounded_int(0, 100),
            default=ROLLOUT_END,
            metavar="N",
            help=f"the canary weight the deployed stack must be at (default {ROLLOUT_END}: the end of a rollout)",
        )
        parser.add_argument(
            "--unverified",
            action="store_true",
            help="do not read the deployed stack (no credentials at hand); the commit message says so",
        )
        parser.add_argument(
            "--stack-name", type=parse_stack_name, default=STACK_NAME, metavar="NAME", help=f"default {STACK_NAME}"
        )

    def run(self, options: argparse.Namespace, args: list[str]) -> int:
        path = self.root / CDK_JSON
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {CDK_JSON}: {one_line(exc)}") from None
        parse_cdk_json(text)  # a malformed cdk.json is refused before a minute of synthesis
        config = read_context(self.root).config()  # every context source, as the synth below reads them
        check_image_committed(self.root)
        outputs = None
        if not options.unverified:
            client = self.cloudformation()
            if client is None:
                raise UsageError(
                    "found no AWS credentials to read the deployed stack, so cannot tell which image the canary runs; "
                    "set AWS_PROFILE and try again, or promote without that check: make promote UNVERIFIED=1 (--unverified)"
                )
            outputs = deployed_outputs(client, options.stack_name)
        self.out.write("synthesizing the working tree (offline) to find the canary image's asset hash...\n")
        self.out.flush()
        asset_hash = self.synthesize_hash(options.stack_name)
        self.out.write(f"canary image: {asset_hash}\n")
        if outputs is not None:
            check_deployed_canary(
                outputs,
                asset_hash=asset_hash,
                architecture=config.cpu_architecture,
                weight=options.weight,
                stack=options.stack_name,
            )
            self.out.write(
                f"the deployed canary runs it at canaryWeight {options.weight} ({config.cpu_architecture})\n"
            )
        else:
            self.out.write("unverified: the deployed stack was not read (--unverified)\n")
        updated = promoted_cdk_json(text, asset_hash)
        if updated is None:
            self.out.write(
                f"nothing to promote: {CDK_JSON} already runs {asset_hash[:12]} as production at canaryWeight 0\n"
            )
            return EXIT_OK
        write_atomically(path, updated, inside=self.root)
        self.out.write(f"{CDK_JSON}: {PRODUCTION_IMAGE} := {asset_hash}, {WEIGHT} := 0\n")
        self.out.write("what this changes in AWS (offline diff against HEAD):\n")
        self.out.flush()
        code = offline_diff.main(["--base", "HEAD"], root=self.root, stdout=self.out, stderr=self.err)
        if code == EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if code != EXIT_OK:
            raise Failed(
                f"{CDK_JSON} was rewritten, but its diff failed (offline_diff exit {code}, above); "
                f"`git checkout {CDK_JSON}` undoes the rewrite"
            )
        canary_commit = (outputs or {}).get(OUTPUT_CANARY_COMMIT)
        self.out.write(
            "review the diff above: production's task definition takes the canary's image, the weight returns to 0.\n"
            f"then: {commit_command(asset_hash, unverified=outputs is None, canary_commit=canary_commit)}\n"
            "and merge the pull request (the pipeline deploys it) or `make deploy`; undo is `git revert` of that commit.\n"
        )
        return EXIT_OK

    def synthesize_hash(self, stack: str) -> str:
        """`cdk synth` of the working tree, offline; the canary image's asset hash from its assembly."""
        synths = cdk_cli.Synths(cdk_cli.offline_env(os.environ), self.err, stack)
        with tempfile.TemporaryDirectory(prefix="promote-") as tmp:
            try:
                outdir = synths.start("the working tree", self.root, Path(tmp) / "cdk.out", {})
                synths.wait()
            finally:
                synths.kill()
            return canary_image_hash(outdir, stack)


def main(
    argv: Sequence[str] | None = None,
    *,
    root: Path = PROJECT_ROOT,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    cloudformation: Callable[[], Any | None] = cloudformation_client,
) -> int:
    return Promote(root, cloudformation=cloudformation, stdout=stdout, stderr=stderr).main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
