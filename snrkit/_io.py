"""Atomic file writes: a result file is always either the old or the new one, never half written."""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    r"""Write `text` to `path` through a temporary file in the same folder and `os.replace`.

    Missing parent folders are created. On any error the temporary file is removed and
    `path` keeps its old content (or stays absent).

    Args:
        path: the file to write.
        text: its new content, written as UTF-8 with newlines untranslated.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as folder:
        ...     path = Path(folder) / "results" / "claims.csv"
        ...     write_atomic(path, "claim,holds\n")
        ...     write_atomic(path, "claim,holds\nyao-eq6,False\n")
        ...     print(path.read_text().splitlines(), sorted(p.name for p in path.parent.iterdir()))
        ['claim,holds', 'yao-eq6,False'] ['claims.csv']
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: os.replace is atomic only within one file system. Opened
    # with "x" rather than by tempfile.mkstemp, whose 0600 mode the result would inherit.
    tmp = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "x", newline="", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
