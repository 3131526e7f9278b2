"""Files: written whole or not at all, and (question, answer) JSONL sets read with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

from lethe.errors import LetheError


def write_atomic(path: Path, text: str, mode: int | None = None) -> None:
    """Write `text` to `path` through a temporary file and a rename: a crash or a full disk mid-write
    leaves no partial file that a resumed step would count as done. `mode`: file permissions."""
    tmp = path.with_name(f".{path.name}.partial")
    tmp.unlink(missing_ok=True)  # a leftover from a crash keeps its old mode through O_CREAT
    # Created with `mode` from the start (not chmod-ed after writing): secrets are never readable by others.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666 if mode is None else mode)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    if mode is not None:
        os.chmod(tmp, mode)  # exact, whatever the umask
    tmp.replace(path)


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file, one per non-blank line."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def load_qa_file(path: Path, what: str) -> list[tuple[str, str]]:
    """(question, answer) pairs of a JSONL set; clear errors for missing or malformed files."""
    if not path.is_file():
        raise LetheError(f"{what} not found: {path}")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            pairs.append((str(row["question"]), str(row["answer"])))
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise LetheError(f"{what} {path} line {number} is not a {{question, answer}} JSON object") from exc
    return pairs
