"""All-or-nothing file writes, shared by checkpoints, model cards, ONNX export and the engine cache.

A reader never sees a half-written file: the data goes to a temp file in the target's directory (same
file system), is flushed and fsync'ed, then renamed over the target. On any error, disk full included,
the temp file is removed and the previous target, if any, stays as it was.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", encoding: str | None = None,
                 file_mode: int | None = None) -> Iterator[IO]:
    """Open a temp file for writing; on a clean exit it replaces ``path``.

    Args:
        path: target file; its directory must exist.
        mode: ``"wb"`` or ``"w"`` (text, with ``encoding``).
        file_mode: permissions of the result (``mkstemp`` makes it 0o600, private).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "card.yaml"
        >>> with atomic_write(target, "w", encoding="utf-8") as handle:
        ...     _ = handle.write("a: 1\\n")
        >>> target.read_text()
        'a: 1\\n'
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if file_mode is not None:
            os.chmod(tmp, file_mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
