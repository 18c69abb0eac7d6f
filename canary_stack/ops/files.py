"""Writing a file the user's checkout depends on (cdk.json): all of it, or nothing.

A temporary file in the same folder, written, flushed and synced, then renamed over the original:
a rename within one file system replaces the name in one step (rename(2)), so a reader, a crash, a
full disk or a read-only folder never sees or leaves a half-written file. A symlink is written
through only to a file inside `inside` (the repository), never to one outside it.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from pathlib import Path

from canary_stack.ops.cli import Failed, UsageError, one_line

# JSON text may hold a lone UTF-16 surrogate as the escape `\ud800` (JSON.parse and the CDK CLI accept
# it); Python reads it into a str that UTF-8 cannot encode. Written back as the same escape, it stays.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def escape_lone_surrogates(json_text: str) -> str:
    """JSON text whose lone surrogates (only possible inside strings) are `\\uXXXX` escapes again."""
    return _LONE_SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)


def write_atomically(path: Path, text: str, *, inside: Path) -> None:
    """Replaces `path`'s content with `text` (UTF-8) in one step; on any failure the file is as it was.

    UsageError when `path` is a symlink to a file outside `inside`; Failed (one line) when the
    write fails (a full disk, a read-only folder, text UTF-8 cannot encode).
    """
    target = Path(path)
    if target.is_symlink():
        resolved = target.resolve()
        if not resolved.is_relative_to(Path(inside).resolve()):
            raise UsageError(
                f"{target.name} is a symlink to {resolved}, outside the repository: nothing was written; "
                f"replace the link with the file itself"
            )
        target = resolved
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise Failed(f"{target.name} was not changed: its new text cannot be written as UTF-8 ({err.reason})") from None
    temporary: str | None = None
    try:
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))  # keep the original's permissions
        os.replace(temporary, target)
        temporary = None
    except OSError as err:
        raise Failed(f"{target.name} was not changed: {one_line(err)}") from None
    finally:
        if temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
