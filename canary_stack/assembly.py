"""What makes a folder deployable, and how a failed run makes it not.

Standard library only: the app (after a failed synthesis) and `make synth` (after a refused one)
both clean the output folder, so no earlier run's templates stay for `cdk deploy --app <folder>`.
"""

from __future__ import annotations

from pathlib import Path

# A deployable cloud assembly: the manifest, and the templates and asset manifests it points at.
# Only the folder's top level: `-o` may name a folder holding other files.
DEPLOYABLE = ("manifest.json", "*.template.json", "*.assets.json")


def remove_deployable(outdir: Path) -> list[Path]:
    """Deletes the cloud assembly's manifest, templates and asset manifests from `outdir`: after a
    failed synthesis nothing there may be deployed with `cdk deploy --app <outdir>`."""
    removed = [path for pattern in DEPLOYABLE for path in sorted(Path(outdir).glob(pattern)) if path.is_file()]
    for path in removed:
        path.unlink()
    return removed
