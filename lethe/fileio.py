"""Writing files whole or not at all."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` to `path` through a temporary file and a rename: a crash or a full disk mid-write
    leaves no partial file that a resumed step would count as done. `mode`: file permissions."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.write_text(text)
    if mode is not None:
        os.chmod(tmp, mode)
    tmp.replace(path)
