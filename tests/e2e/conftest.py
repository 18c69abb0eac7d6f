"""A copy of the project in a git repository of its own, for the tests that need history (a base
revision, a clean image folder): the suite does not depend on the checkout being a git clone."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.git_repo import project_repository


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return project_repository(tmp_path_factory.mktemp("repository"))
