"""Result files: written atomically (always either the old or the new file, never half written), and
their paths checked before any work."""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Self


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
        ...     print(
        ...         path.read_text().splitlines(),
        ...         sorted(p.name for p in path.parent.iterdir()),
        ...     )
        ['claim,holds', 'yao-eq6,False'] ['claims.csv']
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder as the target: os.replace is atomic only within one file system. Opened
    # with "x" rather than by tempfile.mkstemp, whose 0600 mode the result would inherit.
    tmp = _sibling(path, "tmp")
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


def _sibling(path: Path, kind: str) -> Path:
    """A hidden, unique name next to `path`: `os.replace` is atomic only within one file system."""
    return path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.{kind}"


class AtomicFolder:
    """A folder written under a temporary name next to `target`, renamed to it by `commit`; removed on error.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as base:
        ...     target = Path(base) / "results"
        ...     with AtomicFolder(target) as folder:
        ...         _ = (folder / "a.txt").write_text("done")
        ...         before = target.exists()
        ...         folder.commit()
        ...     print(before, sorted(p.name for p in Path(base).iterdir()))
        False ['results']
    """

    def __init__(self, target: Path):
        self.target = target
        self.tmp = _sibling(target, "tmp")

    def __enter__(self) -> Self:
        self.tmp.mkdir(parents=True)
        return self

    def __truediv__(self, name: str) -> Path:
        return self.tmp / name

    def commit(self) -> None:
        """Put the written folder in place of `target`; an old `target` is kept until the rename succeeds."""
        if self.target.exists():
            old = _sibling(self.target, "old")
            os.replace(self.target, old)
            try:
                os.replace(self.tmp, self.target)
            except BaseException:
                os.replace(old, self.target)  # the old results stay where they were
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)

    def __exit__(self, *exc: object) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def check_output_folder(folder: Path, option: str = "--out") -> None:
    """Raise a clear error, before any work, if `folder` cannot be a folder to write results into.

    Args:
        folder: the output folder (it need not exist yet).
        option: how the user names it (for the message).

    Raises:
        ValueError: `folder` or one of its parents is a regular file, or the nearest existing
            ancestor is not writable.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     (Path(tmp) / "notes.txt").write_text("x")
        ...     check_output_folder(Path(tmp) / "notes.txt" / "report")
        Traceback (most recent call last):
        ...
        ValueError: cannot write results to .../notes.txt/report: ...
    """
    folder = Path(folder)
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            if not candidate.is_dir():
                raise ValueError(
                    f"cannot write results to {folder}: {candidate} is a file, not a folder; choose another {option}"
                )
            if not os.access(candidate, os.W_OK):
                raise ValueError(f"cannot write results to {folder}: {candidate} is not writable; choose another {option}")
            return


def check_output_file(path: Path, option: str = "--out") -> None:
    """Raise a clear error, before any work, if `path` cannot be a result file (a folder, or under a file).

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_output_file(Path(tmp))
        Traceback (most recent call last):
        ...
        ValueError: cannot write results to ...: it is a folder; name a file, ...
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write results to {path}: it is a folder; name a file, e.g. {path / 'snr_sweep.csv'}")
    check_output_folder(path.parent, option)
