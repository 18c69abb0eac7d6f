"""canary_stack.ops.promote: the canary image's hash from a cloud assembly, and cdk.json rewritten to it."""

from __future__ import annotations

import difflib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.git_repo import git_repository

from canary_stack.constants import PROJECT_ROOT as ROOT
from canary_stack.ops import promote
from canary_stack.ops.cli import UsageError
from canary_stack.ops.committed import parse_cdk_json

CANARY = "ca1eaa1edf0f32c0d9804a8daa09a5d4023eed29fd554d4fd15ed96afa26a2f5"
OLD = "0" * 64
CDK_JSON_100 = json.dumps({"context": {"canaryWeight": 100, "productionImage": OLD}}, indent=2) + "\n"


def assembly(tmp_path: Path, images: dict) -> Path:
    """A cloud assembly folder with the asset manifest `cdk synth` writes (trimmed to what is read)."""
    folder = tmp_path / "cdk.out"
    folder.mkdir()
    manifest = {"version": "53.0.0", "files": {"f" * 64: {"source": {"path": "x"}}}, "dockerImages": images}
    (folder / "CrystalCanary.assets.json").write_text(json.dumps(manifest, indent=1))
    return folder


def image(asset_hash: str) -> dict:
    return {
        "displayName": "Images/Canary/Copy/asset",
        "source": {"directory": f"asset.{asset_hash}"},
        "destinations": {"current_account-current_region": {"imageTag": asset_hash}},
    }


def test_the_canary_hash_is_the_one_docker_image_of_the_assembly(tmp_path):
    assert promote.canary_image_hash(assembly(tmp_path, {CANARY: image(CANARY)})) == CANARY


@pytest.mark.parametrize(
    "images, message",
    [
        ({}, "CrystalCanary.assets.json must list exactly one Docker image (the canary's), found 0"),
        ({CANARY: image(CANARY), OLD: image(OLD)}, "must list exactly one Docker image (the canary's), found 2"),
        ({"latest": image("latest")}, "the canary image's asset hash must be 64 lowercase hex digits, got 'latest'"),
        ({CANARY.upper(): image(CANARY)}, "must be 64 lowercase hex digits"),
    ],
)
def test_an_assembly_without_exactly_one_image_hash_is_refused(tmp_path, images, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        promote.canary_image_hash(assembly(tmp_path, images))


def test_a_folder_without_the_manifest_is_refused(tmp_path):
    with pytest.raises(UsageError, match="the cloud assembly has no CrystalCanary.assets.json"):
        promote.canary_image_hash(tmp_path)


def changed_lines(before: str, after: str) -> list[str]:
    diff = difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
    return [line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def test_the_real_cdk_json_changes_only_in_the_two_values():
    before = (ROOT / "cdk.json").read_text()
    after = promote.promoted_cdk_json(before, CANARY)
    assert after is not None and after.endswith("}\n") and not after.endswith("\n\n")
    for line in changed_lines(before, after):
        assert line.startswith(
            ('-    "canaryWeight": ', '-    "productionImage": ', '+    "canaryWeight": 0,')
        ) or line == (f'+    "productionImage": "{CANARY}",'), line
    assert f'+    "productionImage": "{CANARY}",' in changed_lines(before, after)
    context = json.loads(after)["context"]
    assert list(context)[:2] == ["canaryWeight", "productionImage"]  # side by side, as a reviewer reads them
    others = {k: v for k, v in json.loads(before)["context"].items() if k != "productionImage"}
    assert {k: v for k, v in context.items() if k != "productionImage"} == {**others, "canaryWeight": 0}
    assert promote.promoted_cdk_json(after, CANARY) is None  # idempotent


def test_an_earlier_production_image_and_weight_are_replaced_in_place():
    before = json.dumps({"app": "x", "context": {"productionImage": OLD, "a": True, "canaryWeight": 100}}, indent=2)
    after = promote.promoted_cdk_json(before + "\n", CANARY)
    assert (
        after
        == json.dumps({"app": "x", "context": {"a": True, "canaryWeight": 0, "productionImage": CANARY}}, indent=2)
        + "\n"
    )


def test_a_committed_weight_written_0_0_at_the_canary_image_is_nothing_to_promote():
    # The CLI hands 0.0 over as 0: already promoted.
    assert (
        promote.promoted_cdk_json(f'{{"context": {{"canaryWeight": 0.0, "productionImage": "{CANARY}"}}}}', CANARY)
        is None
    )


def test_a_cdk_json_without_context_gets_both_values():
    after = promote.promoted_cdk_json('{"app": "x"}', CANARY)
    assert after is not None
    assert parse_cdk_json(after) == {"canaryWeight": 0, "productionImage": CANARY}


def test_promote_refuses_a_malformed_cdk_json_before_synthesizing(tmp_path):
    (tmp_path / "cdk.json").write_text('{"context": {"canaryWeight": 10,}}')
    out, err = io.StringIO(), io.StringIO()
    assert promote.main([], root=tmp_path, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith("promote: error: cdk.json is not valid JSON: Expecting property name")


def test_an_uncommitted_change_to_the_image_is_refused_before_synthesizing(tmp_path):
    # The canary ran the committed image: a hash of the working tree's could name one nobody tested.
    repository = git_repository(tmp_path, {"crystal_src/src/server.cr": "puts 1\n", "cdk.json": CDK_JSON_100})
    (repository / "crystal_src" / "src" / "server.cr").write_text("puts 2\n")
    out, err = io.StringIO(), io.StringIO()
    assert promote.main(["--unverified"], root=repository, stdout=out, stderr=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == (
        "promote: error: crystal_src/ has files that are not HEAD's ('crystal_src/src/server.cr'; changed, untracked, "
        "ignored or skip-worktree): the canary ran the committed image; commit, stash or remove them, then promote\n"
    )
    assert (repository / "cdk.json").read_text() == CDK_JSON_100


# ------------------------------------------------------------------ the deployed stack (issue 18.6)

ARCH = "x86_64"
IMAGE_FILES = {
    "crystal_src/Dockerfile": "FROM scratch\n",
    "crystal_src/.dockerignore": "*\n!code_hash.txt\n!src/**/*.cr\nsrc/**/.*\n",
    "crystal_src/code_hash.txt": "CANARY\n",
    "crystal_src/src/server.cr": "puts 1\n",
}


@pytest.fixture
def repository(tmp_path, monkeypatch):
    """A git repository with the image's files and a cdk.json at weight 100; the synthesis and the
    diff are stand-ins (their real runs: tests/e2e), so these tests are about what promote decides."""
    repo = git_repository(tmp_path, {**IMAGE_FILES, "cdk.json": CDK_JSON_100})
    monkeypatch.setattr(promote.Promote, "synthesize_hash", lambda self, stack: CANARY)
    monkeypatch.setattr(promote.offline_diff, "main", lambda argv, **kw: (kw["stdout"].write("(the diff)\n"), 0)[1])
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.cdk.json of the machine's
    return repo


def outputs(**values: str | None) -> list[dict[str, str]]:
    defaults = {"CanaryImage": CANARY, "CpuArchitecture": ARCH, "CanaryWeight": "100", "CanaryCommit": "CANARY2"}
    merged: dict[str, str | None] = {**defaults, **values}
    return [{"OutputKey": k, "OutputValue": v} for k, v in merged.items() if v is not None]


def stubbed(status: str = "UPDATE_COMPLETE", stack_outputs: list | None = None, error: tuple | None = None):
    """A CloudFormation client that answers one DescribeStacks of CrystalCanary, and nothing else."""
    import datetime

    import boto3
    from botocore.stub import Stubber

    client = boto3.client("cloudformation", region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b")
    stubber = Stubber(client)
    if error is not None:
        stubber.add_client_error(
            "describe_stacks",
            service_error_code=error[0],
            service_message=error[1],
            http_status_code=400,
            expected_params={"StackName": "CrystalCanary"},
        )
    else:
        stack = {
            "StackName": "CrystalCanary",
            "CreationTime": datetime.datetime(2026, 1, 1),
            "StackStatus": status,
            "Outputs": outputs() if stack_outputs is None else stack_outputs,
        }
        stubber.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "CrystalCanary"})
    stubber.activate()
    client.stubber = stubber
    return client


def run_promote(repo: Path, argv: list[str], client) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = promote.main(argv, root=repo, stdout=out, stderr=err, cloudformation=lambda: client)
    if client is not None:
        client.stubber.assert_no_pending_responses()  # the one call was made
    return code, out.getvalue(), err.getvalue()


def test_promotes_the_hash_the_deployed_canary_runs_at_100(repository):
    code, out, err = run_promote(repository, [], stubbed())
    assert code == 0, err
    context = json.loads((repository / "cdk.json").read_text())["context"]
    assert context == {"canaryWeight": 0, "productionImage": CANARY}
    assert "the deployed canary runs it at canaryWeight 100 (x86_64)" in out
    assert out.rstrip().splitlines()[-2] == (
        f"then: git commit -m 'Promote the canary image {CANARY[:12]} to production (the canary answers commit CANARY2)' cdk.json"
    )


@pytest.mark.parametrize(
    "client_args, line",
    [
        (
            {"stack_outputs": outputs(CanaryImage=OLD)},
            f"the deployed canary runs image '{OLD[:12]}', this checkout builds {CANARY[:12]}",
        ),
        (
            {"stack_outputs": outputs(CpuArchitecture="arm64")},
            "the deployed canary runs cpuArchitecture='arm64', this checkout builds cpuArchitecture=x86_64",
        ),
        (
            {"stack_outputs": outputs(CanaryWeight="10")},
            "the deployed canary takes canaryWeight '10', promote expects 100",
        ),
        ({"stack_outputs": outputs(CanaryImage=None)}, "the deployed stack CrystalCanary has no output CanaryImage"),
        ({"status": "UPDATE_IN_PROGRESS"}, "the deployed stack CrystalCanary is UPDATE_IN_PROGRESS"),
        ({"status": "ROLLBACK_COMPLETE"}, "the deployed stack CrystalCanary is ROLLBACK_COMPLETE"),
        (
            {"error": ("ValidationError", "Stack with id CrystalCanary does not exist")},
            "no stack CrystalCanary is deployed in eu-west-1",
        ),
        (
            {"error": ("AccessDenied", "not allowed")},
            "cannot read the deployed stack CrystalCanary: An error occurred (AccessDenied)",
        ),
    ],
)
def test_anything_but_the_deployed_canary_at_the_end_of_a_rollout_is_refused(repository, client_args, line):
    code, out, err = run_promote(repository, [], stubbed(**client_args))
    assert code == 2
    assert err.startswith(f"promote: error: {line}") and err.count("\n") == 1, err
    assert (repository / "cdk.json").read_text() == CDK_JSON_100


def test_another_end_weight_is_given_with_weight(repository):
    code, out, err = run_promote(repository, ["--weight", "10"], stubbed(stack_outputs=outputs(CanaryWeight="10")))
    assert code == 0, err


def test_without_credentials_it_refuses_unless_unverified_which_the_commit_says(repository):
    code, out, err = run_promote(repository, [], None)
    assert (code, out) == (2, "")
    assert err == (
        "promote: error: found no AWS credentials to read the deployed stack, so cannot tell which image the canary "
        "runs; set AWS_PROFILE and try again, or promote without that check: make promote UNVERIFIED=1 (--unverified)\n"
    )
    assert (repository / "cdk.json").read_text() == CDK_JSON_100
    code, out, err = run_promote(repository, ["--unverified"], None)
    assert code == 0, err
    assert (
        f"then: git commit -m 'unverified: Promote the canary image {CANARY[:12]} to production; the deployed stack was not read' cdk.json"
        in out
    )


def test_the_sdk_finds_no_credentials_in_an_empty_environment(monkeypatch, tmp_path):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    assert promote.cloudformation_client() is None


@pytest.mark.parametrize(
    "name, text",
    [
        ("editor swap file", ".server.cr.swp"),
        ("untracked source", "extra.cr"),
    ],
)
def test_files_git_does_not_vouch_for_are_refused(repository, name, text):
    (repository / "crystal_src" / "src" / text).write_text("x")
    code, out, err = run_promote(repository, ["--unverified"], None)
    if text.startswith("."):
        assert code == 0, err  # not in the image's build context: its hash cannot change
    else:
        assert code == 2 and "crystal_src/src/extra.cr" in err


def test_ignored_and_skip_worktree_sources_are_refused(repository):
    from support.git_repo import git

    (repository / ".git" / "info" / "exclude").write_text("crystal_src/src/hidden.cr\n")
    (repository / "crystal_src" / "src" / "hidden.cr").write_text("x")
    code, _, err = run_promote(repository, ["--unverified"], None)
    assert code == 2 and "'crystal_src/src/hidden.cr;" in err.replace("'", "'", 1) or "crystal_src/src/hidden.cr" in err
    (repository / "crystal_src" / "src" / "hidden.cr").unlink()
    git(repository, "update-index", "--skip-worktree", "crystal_src/src/server.cr")
    (repository / "crystal_src" / "src" / "server.cr").write_text("puts 2\n")
    code, _, err = run_promote(repository, ["--unverified"], None)
    assert code == 2 and "crystal_src/src/server.cr" in err


def test_a_plain_export_without_git_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "cdk.json").write_text(CDK_JSON_100)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    code, out, err = run_promote(folder, ["--unverified"], None)
    assert code == 2 and "is not a git checkout" in err


# ------------------------------------------------------------------ cdk.json written in one step (issue 18.5)


def test_a_lone_surrogate_escape_is_written_back_as_the_escape(repository):
    text = CDK_JSON_100.replace('"canaryWeight"', '"@note": "\\ud800 kept",\n    "canaryWeight"')
    (repository / "cdk.json").write_text(text)
    from support.git_repo import commit_all

    commit_all(repository, "a note")
    code, out, err = run_promote(repository, ["--unverified"], None)
    assert code == 0, err
    written = (repository / "cdk.json").read_text(encoding="utf-8")
    assert '"@note": "\\ud800 kept"' in written
    assert json.loads(written)["context"]["@note"] == json.loads(text)["context"]["@note"]


def test_a_full_disk_leaves_cdk_json_byte_for_byte_with_one_line(repository):
    # A file-size limit makes every write past 16 bytes fail (EFBIG), as a full disk does (ENOSPC).
    script = (
        "import resource, signal, sys\n"
        "from canary_stack.ops import promote\n"
        f"promote.Promote.synthesize_hash = lambda self, stack: {CANARY!r}\n"
        # The disk fills up once the new text is known, right before it is written.
        "promoted = promote.promoted_cdk_json\n"
        "def full(*args, **kwargs):\n"
        "    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "    resource.setrlimit(resource.RLIMIT_FSIZE, (16, 16))\n"
        "    return promoted(*args, **kwargs)\n"
        "promote.promoted_cdk_json = full\n"
        f"sys.exit(promote.main(['--unverified'], root=__import__('pathlib').Path({str(repository)!r})))\n"
    )
    before = (repository / "cdk.json").read_bytes()
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert result.stderr == "promote: error: cdk.json was not changed: [Errno 27] File too large\n"
    assert (repository / "cdk.json").read_bytes() == before
    assert sorted(p.name for p in repository.iterdir()) == sorted(
        [".git", "cdk.json", "crystal_src"]
    )  # no temporary file


def test_a_folder_that_refuses_new_files_leaves_cdk_json_as_it_was(repository, monkeypatch):
    import errno

    from canary_stack.ops import files

    def read_only(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(repository))

    monkeypatch.setattr(files.tempfile, "mkstemp", read_only)
    code, out, err = run_promote(repository, ["--unverified"], None)
    assert code == 1
    assert err == f"promote: error: cdk.json was not changed: [Errno 13] Permission denied: '{repository}'\n"
    assert (repository / "cdk.json").read_text() == CDK_JSON_100


def test_cdk_json_is_never_written_through_a_symlink_out_of_the_repository(repository, tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text(CDK_JSON_100)
    (repository / "cdk.json").unlink()
    (repository / "cdk.json").symlink_to(outside)
    code, out, err = run_promote(repository, ["--unverified"], None)
    assert code == 2
    assert (
        err
        == f"promote: error: cdk.json is a symlink to {outside}, outside the repository: nothing was written; replace the link with the file itself\n"
    )
    assert outside.read_text() == CDK_JSON_100
    # A link to a file inside the repository is written through, the link kept.
    inside = repository / "config" / "cdk.json"
    inside.parent.mkdir()
    inside.write_text(CDK_JSON_100)
    (repository / "cdk.json").unlink()
    (repository / "cdk.json").symlink_to(inside)
    code, out, err = run_promote(repository, ["--unverified"], None)
    assert code == 0, err
    assert (repository / "cdk.json").is_symlink() and json.loads(inside.read_text())["context"][
        "productionImage"
    ] == CANARY
