"""The image the Dockerfile builds, read from the Dockerfile (there is no Docker daemon here)."""

from __future__ import annotations

from crystal.support import CRYSTAL_SRC, final_stage_user


def test_final_stage_user_parser():
    assert final_stage_user("FROM a\nUSER 1:1\nFROM scratch\n") is None
    assert final_stage_user("FROM a\nFROM scratch\nuser 5\n# USER 0\n") == "5"


def test_image_runs_with_non_root_uid_and_gid():
    # The final stage is `scratch`: no /etc/passwd, so a bare `USER 10001` has no
    # primary group, and "when the user doesn't have a primary group then the image
    # (or the next instructions) will be run with the root group" (Dockerfile
    # reference, USER: https://docs.docker.com/reference/dockerfile/#user). Both ids
    # numeric, as there are no names to look up; the ECS task's `user` repeats them.
    assert final_stage_user((CRYSTAL_SRC / "Dockerfile").read_text()) == "10001:10001"
