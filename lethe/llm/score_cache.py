"""Scores of an unmodified model kept on disk: greedy answers and answer log-probs, by model content.

Every request that starts from the same base model scores it again on mostly the same rows (retain,
real authors, world facts, neighbors, the MIA holdout): about 30 s of a 90 s evaluation on the default
world. A model's greedy answer and log-probs depend only on its weights, its tokenizer and the
software, so they are stored per model fingerprint (see `model_key`) and a later evaluation scores
only the rows it has not seen.

Rows are batched with other rows when they are first scored; a later run would batch them
differently, which can move a log-prob in its last float digits (padding is masked, not removed).
The stored value is one such measurement of the same model, as legitimate as a fresh one.

Only models that are never changed in place may go through the cache: `with_adapter` merges an
adapter into the weights, and calls `disable` on a CachingBackend first.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path

from lethe.config import Params
from lethe.llm.backend import Backend
from lethe.llm.fingerprint import model_hash

GREEDY, LOGPROBS = "greedy", "logprobs"


def model_key(content_hash: str, backend: Backend) -> str:
    """The fingerprint scores are stored under: the model's content hash, and what else changes its
    numbers (dtype, device type, torch and transformers versions)."""
    import torch
    import transformers

    parts = [content_hash, str(next(backend.model.parameters()).dtype), backend.device.type,
             torch.__version__, transformers.__version__]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


class ScoreStore:
    """One SQLite file per model key; safe for several processes (SQLite's own locking)."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.execute("CREATE TABLE IF NOT EXISTS scores (kind TEXT, key TEXT, value TEXT, PRIMARY KEY (kind, key))")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=60)

    @staticmethod
    def row_key(*parts) -> str:
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def get_many(self, kind: str, keys: Sequence[str]) -> dict[str, object]:
        """The stored values of those keys that have one."""
        found: dict[str, object] = {}
        unique = list(dict.fromkeys(keys))
        with closing(self._connect()) as db:
            for start in range(0, len(unique), 500):  # SQLite's limit on bound parameters
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in db.execute(f"SELECT key, value FROM scores WHERE kind = ? AND key IN ({marks})",
                                             [kind, *chunk]):
                    found[key] = json.loads(value)
        return found

    def put_many(self, kind: str, values: dict[str, object]) -> None:
        with closing(self._connect()) as db, db:
            db.executemany("INSERT OR IGNORE INTO scores (kind, key, value) VALUES (?, ?, ?)",
                           [(kind, key, json.dumps(value)) for key, value in values.items()])


class CachingBackend(Backend):
    """The backend's model, with `greedy` and `answer_logprobs` answered from a ScoreStore where it
    has the row, scored (and stored) otherwise. `hits` and `misses` count rows."""

    def __init__(self, backend: Backend, store: ScoreStore):
        super().__init__(backend.model, backend.tokenizer, backend.batch_size)
        self.store, self.hits, self.misses, self._enabled = store, 0, 0, True

    def disable(self) -> None:
        """The model is about to change in place: from now on every row is scored, nothing stored."""
        self._enabled = False

    def _cached(self, kind: str, keys: list[str], items: list, score) -> list:
        if not self._enabled:
            return score(items)
        stored = self.store.get_many(kind, keys)
        first_of: dict[str, int] = {}  # each row not yet stored, scored once however often it is asked
        for i, key in enumerate(keys):
            if key not in stored:
                first_of.setdefault(key, i)
        fresh = score([items[i] for i in first_of.values()]) if first_of else []
        stored_now = dict(zip(first_of, fresh))
        if stored_now:
            self.store.put_many(kind, stored_now)
        stored.update(stored_now)
        self.hits += len(keys) - len(first_of)
        self.misses += len(first_of)
        return [stored[key] for key in keys]

    def greedy(self, questions: Sequence[str], max_new_tokens: int = 96) -> list[str]:
        keys = [self.store.row_key(q, max_new_tokens) for q in questions]
        return self._cached(GREEDY, keys, list(questions), lambda rows: super(CachingBackend, self).greedy(
            rows, max_new_tokens))

    def answer_logprobs(self, pairs: Sequence[tuple[str, str]]) -> list[list[float]]:
        keys = [self.store.row_key(q, a) for q, a in pairs]
        return self._cached(LOGPROBS, keys, list(pairs), super().answer_logprobs)


def score_cache_dir(params: Params) -> Path | None:
    """Where unmodified models' scores are kept; None when backend.score_cache is off."""
    return Path(params.registry.workdir) / "_scores" if params.backend.score_cache else None


def load_cached(model_dir: str | Path, params: Params) -> Backend:
    """The model in `model_dir`, loaded with params' backend settings, through params' score cache."""
    return caching(Backend.from_params(model_dir, params.backend), score_cache_dir(params), model_dir)


def caching(backend: Backend, cache_dir: Path | None, model_dir: str | Path) -> Backend:
    """`backend`, loaded from `model_dir` and not changed since, through the score cache under
    `cache_dir` (None: the backend itself, uncached)."""
    if cache_dir is None:
        return backend
    return CachingBackend(backend, ScoreStore(cache_dir / f"{model_key(model_hash(model_dir), backend)}.sqlite"))
