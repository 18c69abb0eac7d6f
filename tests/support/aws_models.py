"""One botocore loader of service models for the whole test process.

Every `mock_aws()` gives boto3 a default session of its own (moto patches `boto3.DEFAULT_SESSION` to
None), and every new session made its own loader, which parsed the service models' JSON again: about
300 parses of 10 ms each for the in-process tools and moto in one run. `share_service_models` makes
sessions with the same data path share one loader, as the clients of one session always do. What a
session holds of its own (credentials, region, event hooks, endpoints) is untouched: a loader only
reads botocore's data files and caches what it parsed.
"""

from __future__ import annotations

import functools

import botocore.loaders
import botocore.session


def share_service_models() -> None:
    """Sessions made from now on in this process share one loader per data path (AWS_DATA_PATH)."""
    if getattr(botocore.session.create_loader, "cache_info", None) is None:
        botocore.session.create_loader = functools.cache(botocore.loaders.create_loader)
