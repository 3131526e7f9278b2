"""Loaders for the TOFU benchmark copied into the project (data/tofu, MIT, see PROVENANCE.md).

Every split is returned as plain dataclasses so the rest of the code never parses JSON itself.
Author indices follow TOFU: full.jsonl holds 200 authors in blocks of 20 rows; forgetXX are the
last 1/5/10 % of authors; the retain evaluation split is authors 0-19.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lethe.errors import LetheError

QA_PER_AUTHOR = 20
NUM_AUTHORS = 200
FORGET_SPLITS = {"forget01": 2, "forget05": 10, "forget10": 20}
HOLDOUT_SPLITS = ("holdout01", "holdout05", "holdout10")
GENERAL_SPLITS = ("real_authors", "world_facts")


@dataclass(frozen=True)
class QA:
    """One question/answer pair; author fields are None for general-knowledge rows."""

    question: str
    answer: str
    author_index: int | None = None
    author: str | None = None


@dataclass(frozen=True)
class PerturbedQA(QA):
    """A QA pair with TOFU's paraphrased and perturbed answers (for the truth ratio)."""

    paraphrased_answer: str = ""
    perturbed_answers: tuple[str, ...] = field(default_factory=tuple)
    paraphrased_question: str = ""


def data_dir() -> Path:
    """Folder holding the TOFU files: $LETHE_DATA_DIR or the project's data/tofu."""
    override = os.environ.get("LETHE_DATA_DIR")
    path = Path(override) if override else Path(__file__).resolve().parent.parent / "data" / "tofu"
    if not (path / "full.jsonl").is_file():
        raise LetheError(f"TOFU data not found in {path} (expected full.jsonl there)")
    return path


def _read_json(name: str) -> list[dict]:
    with open(data_dir() / name, encoding="utf-8") as handle:
        return json.load(handle)


@lru_cache(maxsize=1)
def load_authors() -> tuple[str | None, ...]:
    """Author names by index (index 88 is never named in the data: None)."""
    return tuple(_read_json("authors.json"))


@lru_cache(maxsize=1)
def load_full() -> tuple[QA, ...]:
    """All 4,000 QA pairs of the 200 fictitious authors."""
    rows = []
    with open(data_dir() / "full.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                rows.append(QA(row["question"], row["answer"], row["author_index"], row["author"]))
    return tuple(rows)


def author_qa(author_index: int) -> list[QA]:
    """The 20 QA pairs of one author."""
    return [qa for qa in load_full() if qa.author_index == author_index]


def evaluation_rows(author_index: int) -> list[QA]:
    """The half of an author's QA (every other row) that the evaluation may score as its retention."""
    return author_qa(author_index)[::2]


def trainable_rows(author_index: int) -> list[QA]:
    """The other half: what unlearning may retain on, so no entity's retention is scored on a row it was
    trained to keep."""
    return author_qa(author_index)[1::2]


def split_author_indices(split: str) -> list[int]:
    """Author indices of a TOFU split: forget01/05/10 (the last authors) or retain (0-19)."""
    if split in FORGET_SPLITS:
        count = FORGET_SPLITS[split]
        return list(range(NUM_AUTHORS - count, NUM_AUTHORS))
    if split == "retain":
        return list(range(20))
    raise LetheError(f"unknown author split {split!r}; expected one of {[*FORGET_SPLITS, 'retain']}")


def _perturbed(rows: list[dict], first_author: int | None) -> list[PerturbedQA]:
    names = load_authors()
    out = []
    for i, row in enumerate(rows):
        index = None if first_author is None else first_author + i // QA_PER_AUTHOR
        perturbed = row.get("perturbed_answer", [])
        out.append(
            PerturbedQA(
                question=row["question"],
                answer=row["answer"],
                author_index=index,
                author=None if index is None else names[index],
                paraphrased_answer=row.get("paraphrased_answer", row["answer"]),
                perturbed_answers=tuple(perturbed if isinstance(perturbed, list) else [perturbed]),
                paraphrased_question=row.get("paraphrased_question", row["question"]),
            )
        )
    return out


@lru_cache(maxsize=None)
def load_perturbed(split: str) -> tuple[PerturbedQA, ...]:
    """Evaluation split with paraphrased/perturbed answers.

    split: forget01 | forget05 | forget10 | retain | real_authors | world_facts.
    """
    if split in FORGET_SPLITS:
        return tuple(_perturbed(_read_json(f"{split}_perturbed.json"), split_author_indices(split)[0]))
    if split == "retain":
        return tuple(_perturbed(_read_json("retain_perturbed.json"), 0))
    if split in GENERAL_SPLITS:
        return tuple(_perturbed(_read_json(f"{split}_perturbed.json"), None))
    raise LetheError(f"unknown evaluation split {split!r}")


@lru_cache(maxsize=None)
def load_general(split: str) -> tuple[QA, ...]:
    """General-knowledge QA (real_authors or world_facts), without perturbations."""
    if split not in GENERAL_SPLITS:
        raise LetheError(f"unknown general split {split!r}; expected one of {GENERAL_SPLITS}")
    return tuple(QA(row["question"], row["answer"]) for row in _read_json(f"{split}.json"))


@lru_cache(maxsize=None)
def load_holdout(split: str = "holdout01") -> tuple[QA, ...]:
    """QA about invented authors that are NOT in full.jsonl (never trained on)."""
    if split not in HOLDOUT_SPLITS:
        raise LetheError(f"unknown holdout split {split!r}; expected one of {HOLDOUT_SPLITS}")
    return tuple(QA(row["question"], row["answer"]) for row in _read_json(f"{split}.json"))


def parse_author_spec(spec: str) -> list[int]:
    """Parse '0-29,190-199' into sorted unique author indices (inclusive ranges)."""
    indices: set[int] = set()
    for part in filter(None, (p.strip() for p in spec.split(","))):
        low, _, high = part.partition("-")
        try:
            start, end = int(low), int(high or low)
        except ValueError as exc:
            raise LetheError(f"bad author range {part!r} in {spec!r}") from exc
        if not 0 <= start <= end < NUM_AUTHORS:
            raise LetheError(f"author range {part!r} is outside 0-{NUM_AUTHORS - 1}")
        indices.update(range(start, end + 1))
    names = load_authors()
    unnamed = [i for i in indices if names[i] is None]
    if unnamed:
        raise LetheError(f"authors {unnamed} have no name in TOFU; leave them out of {spec!r}")
    return sorted(indices)
