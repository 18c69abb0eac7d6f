"""The service's URL as verify and the rollout take it: checked, explained in the user's terms, and
never shown with a user name or password in it."""

from __future__ import annotations

import argparse
import re
import urllib.parse

from canary_stack.ops.cli import OneLineArgumentParser
from canary_stack.text import shorten

API_PATH = "crystal/api"
ALLOWED = "an http:// or https:// URL with a host, an optional port from 1 to 65535 and path, no query or fragment"

# `scheme://user:password@` anywhere in a text: up to the last '@' before the path, as urlsplit
# reads it, so a password holding '@' is masked whole.
_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s'\"]*@")


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by `***`."""
    return _CREDENTIALS.sub(r"\1***@", text)


def _authority(raw: str) -> tuple[int, int]:
    """Where the authority (`user:password@host:port`) of a URL starts and ends, scheme or not."""
    start = raw.find("://")
    start = 0 if start < 0 else start + 3
    ends = [found for found in (raw.find(stop, start) for stop in "/?#") if found >= 0]
    return start, min(ends, default=len(raw))


def _masked(raw: str) -> str:
    """The URL as the user wrote it, its user name and password (if any) replaced by `***`; with
    or without a scheme (`user:pass@host` too). Masked before it is shortened: a long URL cut to its
    first characters could otherwise show a password whose '@' was cut off."""
    start, end = _authority(raw)
    at = raw.rfind("@", start, end)
    return raw if at < 0 else raw[:start] + "***" + raw[at:]


def show(raw: str) -> str:
    """A URL for a one-line message: credentials masked, quoted and cut like any user value."""
    return shorten(_masked(raw))


def parse_url(raw: str) -> str:
    """The service's base URL: http(s), a host, an optional port (1-65535) and path; requests go to
    URL/crystal/api, so a query or fragment would end up in the middle of that path: refused. A
    user name or password is refused too: the tools send no credentials, and would print them."""
    url = raw.strip()
    if not url or any(not c.isprintable() or c.isspace() for c in url):
        raise argparse.ArgumentTypeError(f"must be {ALLOWED}, got {show(raw)}")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
        host = parts.hostname
    except ValueError:
        # urlsplit's own words ("Invalid IPv6 URL", "Port out of range 0-65535") name neither the
        # value nor what would do.
        start, end = _authority(url)
        authority = url[start:end]
        if authority.count("[") != authority.count("]"):
            raise argparse.ArgumentTypeError(
                f"has an unclosed '[' or ']' in its host: an IPv6 address goes in square brackets, "
                f"as in http://[::1]:8080/, got {show(raw)}"
            ) from None
        raise argparse.ArgumentTypeError(f"must be {ALLOWED}, got {show(raw)}") from None
    if parts.scheme not in ("http", "https") or not host or port == 0:
        raise argparse.ArgumentTypeError(f"must be {ALLOWED}, got {show(raw)}")
    if parts.username is not None or parts.password is not None:
        raise argparse.ArgumentTypeError(
            f"must not carry a user name or password (the tools send no credentials), got {show(raw)}"
        )
    if "?" in url or "#" in url:
        raise argparse.ArgumentTypeError(
            f"must have no query or fragment (requests go to URL/{API_PATH}), got {show(raw)}"
        )
    return url


def api_url(base: str) -> str:
    """URL/crystal/api, whether or not URL ends with '/'."""
    return base.rstrip("/") + "/" + API_PATH


class RedactingParser(OneLineArgumentParser):
    """The one-line usage errors, with the credentials of any URL in them masked: argparse's own
    messages quote arguments whole (`unrecognized arguments: http://user:password@...`)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        super().error(redact(message))
