"""A model folder's content hash: what lineage records and what the score cache is keyed by."""

from __future__ import annotations

import hashlib
from pathlib import Path

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt")
_hashed: dict[tuple, str] = {}  # by folder and its files' (name, size, mtime): a request hashes one model often


def model_hash(model_dir: str | Path) -> str:
    """SHA-256 (first 16 hex) over a model folder's weight, config and tokenizer files."""
    root = Path(model_dir)
    files = sorted(path for path in root.rglob("*") if path.is_file() and path.suffix in _WEIGHT_SUFFIXES)
    signature = (str(root.resolve()), *((f.relative_to(root).as_posix(), f.stat().st_size, f.stat().st_mtime_ns)
                                        for f in files))
    if signature not in _hashed:
        digest = hashlib.sha256()
        for path in files:
            digest.update(path.relative_to(root).as_posix().encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _hashed[signature] = digest.hexdigest()[:16]
    return _hashed[signature]
