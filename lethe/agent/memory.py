"""The agent's persistent memory: one SQLite file with records, derived items, links and an index.

- ``items``        raw records (``record``) and derived artifacts (``summary``, ``fact``, ``note``)
- ``derivations``  child -> parent links (``derived_from``); cycles are allowed, agents make them
- ``mentions``     which known entities an item names
- ``items_fts``    the retrieval index (FTS5, BM25); an item's postings live and die with it
- ``blocklist``    write-time guard: surface forms and facts that may not be written again
- ``events``       what changed and why, without the content (the audit trail of the memory)

``secure_delete`` is on and :meth:`MemoryStore.compact` rebuilds the file, so deleted text does
not linger in free pages: after unlearning, the target's name is not in the file's bytes.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from lethe.errors import LetheError
from lethe.rouge import STOPWORDS

KINDS = ("record", "summary", "fact", "note")
SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    text TEXT NOT NULL,
    generator TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL DEFAULT 'active',
    revision INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS derivations (
    child INTEGER NOT NULL, parent INTEGER NOT NULL, PRIMARY KEY (child, parent)
);
CREATE INDEX IF NOT EXISTS derivations_parent ON derivations(parent);
CREATE TABLE IF NOT EXISTS mentions (
    item_id INTEGER NOT NULL, entity TEXT NOT NULL, PRIMARY KEY (item_id, entity)
);
CREATE INDEX IF NOT EXISTS mentions_entity ON mentions(entity);
CREATE TABLE IF NOT EXISTS entities (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS blocklist (
    form TEXT NOT NULL, kind TEXT NOT NULL, source TEXT NOT NULL, PRIMARY KEY (form, kind)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY, at TEXT NOT NULL, action TEXT NOT NULL, item_id INTEGER, detail TEXT NOT NULL
);
CREATE VIRTUAL TABLE IF NOT EXISTS items_fts USING fts5(text, tokenize='unicode61');
"""


class MemoryWriteBlocked(LetheError):
    """A write that the blocklist refuses (it would bring a forgotten entity back)."""


@dataclass(frozen=True)
class Item:
    """One memory item as retrieval and the pathway see it."""

    id: int
    kind: str
    text: str
    status: str
    generator: str = ""
    parents: tuple[int, ...] = ()
    mentions: tuple[str, ...] = ()
    score: float = 0.0

    def to_dict(self) -> dict:
        return {"id": self.id, "kind": self.kind, "text": self.text, "status": self.status,
                "generator": self.generator, "derived_from": list(self.parents),
                "mentions": list(self.mentions), "score": self.score}


@dataclass
class Blocklist:
    """What may not be written: names (whole-word surface forms) and facts (ROUGE-L overlap)."""

    surface_forms: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    fact_threshold: float = 0.6

    def reason(self, text: str) -> str | None:
        """Why `text` may not be written, or None when it may."""
        from lethe.agent.leaks import fact_overlap, surface_pattern

        if self.surface_forms and surface_pattern(self.surface_forms).search(text):
            return "names a forgotten entity"
        if self.facts and fact_overlap(text, self.facts, self.surface_forms) >= self.fact_threshold:
            return "restates a forgotten fact"
        return None


def fts_query(text: str) -> str:
    """An FTS5 OR-query over the content words of `text` (quoted, so no FTS syntax leaks in)."""
    words = [w for w in re.findall(r"[^\W_]+", text.lower()) if w not in STOPWORDS and len(w) > 1]
    return " OR ".join(f'"{w}"' for w in dict.fromkeys(words))


class MemoryStore:
    """Read and write one memory file; every write goes through the blocklist unless told not to."""

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise LetheError(f"no agent memory at {self.path} (seed one with `lethe memory seed`)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path)
            self.db.execute("PRAGMA secure_delete = ON")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LetheError(f"{self.path} is not an agent memory (SQLite): {exc}") from exc

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.db.commit()
        self.close()

    # -- writes ----------------------------------------------------------------------------
    def log(self, action: str, item_id: int | None, detail: str) -> None:
        """Append an audit event (never the item's text)."""
        self.db.execute("INSERT INTO events (at, action, item_id, detail) VALUES (?, ?, ?, ?)",
                        (datetime.now(UTC).isoformat(timespec="seconds"), action, item_id, detail))

    def add_entities(self, names: Iterable[str]) -> None:
        """Entities whose mentions are tracked on every write."""
        self.db.executemany("INSERT OR IGNORE INTO entities (name) VALUES (?)", [(n,) for n in names])

    def entities(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT name FROM entities ORDER BY name")]

    def detect_mentions(self, text: str) -> list[str]:
        """Known entities that `text` names in full (case-insensitive, whole words)."""
        from lethe.agent.leaks import surface_pattern

        return [name for name in self.entities() if surface_pattern([name]).search(text)]

    def add(self, kind: str, text: str, derived_from: Sequence[int] = (), generator: str = "",
            mentions: Sequence[str] | None = None, guard: bool = True) -> int:
        """Store an item, index it, link it to its sources; MemoryWriteBlocked if the guard refuses."""
        if kind not in KINDS:
            raise LetheError(f"unknown memory item kind {kind!r}; kinds are {', '.join(KINDS)}")
        text = " ".join(text.split())
        if not text:
            raise LetheError("a memory item needs text")
        if guard:
            why = self.blocklist().reason(text)
            if why:
                self.log("write_blocked", None, why)
                raise MemoryWriteBlocked(f"memory write refused: it {why}")
        missing = [p for p in derived_from if self.get(p) is None]
        if missing:
            raise LetheError(f"derived_from names items that do not exist: {missing}")
        cur = self.db.execute("INSERT INTO items (kind, text, generator) VALUES (?, ?, ?)", (kind, text, generator))
        item_id = int(cur.lastrowid)
        self.db.execute("INSERT INTO items_fts (rowid, text) VALUES (?, ?)", (item_id, text))
        self.db.executemany("INSERT OR IGNORE INTO derivations (child, parent) VALUES (?, ?)",
                            [(item_id, p) for p in derived_from])
        names = self.detect_mentions(text) if mentions is None else mentions
        self.db.executemany("INSERT OR IGNORE INTO mentions (item_id, entity) VALUES (?, ?)",
                            [(item_id, n) for n in names])
        self.log("add", item_id, kind)
        return item_id

    def link(self, child: int, parent: int) -> None:
        """Add a derived_from link after the fact (how cycles arise)."""
        self.db.execute("INSERT OR IGNORE INTO derivations (child, parent) VALUES (?, ?)", (child, parent))

    def delete(self, item_id: int, reason: str) -> None:
        """Remove an item, its index postings, mentions and links."""
        self.db.execute("DELETE FROM items WHERE id = ?", (item_id,))
        self.db.execute("DELETE FROM items_fts WHERE rowid = ?", (item_id,))
        self.db.execute("DELETE FROM mentions WHERE item_id = ?", (item_id,))
        self.db.execute("DELETE FROM derivations WHERE child = ? OR parent = ?", (item_id, item_id))
        self.log("delete", item_id, reason)

    def invalidate(self, item_id: int, reason: str) -> None:
        """Hide an item from retrieval until it is regenerated."""
        self.db.execute("UPDATE items SET status = 'invalidated' WHERE id = ?", (item_id,))
        self.db.execute("DELETE FROM items_fts WHERE rowid = ?", (item_id,))
        self.log("invalidate", item_id, reason)

    def regenerate(self, item_id: int, text: str, parents: Sequence[int], reason: str) -> None:
        """Replace an invalidated item's text (derived anew from `parents`) and make it active again."""
        text = " ".join(text.split())
        why = self.blocklist().reason(text)
        if why:
            raise MemoryWriteBlocked(f"regenerated item {item_id} still {why}")
        self.db.execute("UPDATE items SET text = ?, status = 'active', revision = revision + 1 WHERE id = ?",
                        (text, item_id))
        self.db.execute("DELETE FROM items_fts WHERE rowid = ?", (item_id,))
        self.db.execute("INSERT INTO items_fts (rowid, text) VALUES (?, ?)", (item_id, text))
        self.db.execute("DELETE FROM derivations WHERE child = ?", (item_id,))
        self.db.executemany("INSERT INTO derivations (child, parent) VALUES (?, ?)", [(item_id, p) for p in parents])
        self.db.execute("DELETE FROM mentions WHERE item_id = ?", (item_id,))
        self.db.executemany("INSERT OR IGNORE INTO mentions (item_id, entity) VALUES (?, ?)",
                            [(item_id, n) for n in self.detect_mentions(text)])
        self.log("regenerate", item_id, reason)

    def block(self, forms: Iterable[str], kind: str, source: str) -> int:
        """Add surface forms (kind 'surface') or facts (kind 'fact') to the write-time blocklist."""
        if kind not in ("surface", "fact"):
            raise LetheError(f"blocklist kind must be 'surface' or 'fact', not {kind!r}")
        rows = [(" ".join(f.split()), kind, source) for f in forms if f and f.strip()]
        before = self.db.total_changes
        self.db.executemany("INSERT OR IGNORE INTO blocklist (form, kind, source) VALUES (?, ?, ?)", rows)
        added = self.db.total_changes - before
        self.log("block", None, f"{added} {kind} forms from {source}")
        return added

    def blocklist(self, fact_threshold: float = 0.6) -> Blocklist:
        rows = self.db.execute("SELECT form, kind FROM blocklist ORDER BY form").fetchall()
        return Blocklist([f for f, k in rows if k == "surface"], [f for f, k in rows if k == "fact"], fact_threshold)

    def commit(self) -> None:
        self.db.commit()

    def compact(self) -> None:
        """Merge the index and rebuild the file so no deleted text survives in free pages."""
        self.db.execute("INSERT INTO items_fts (items_fts) VALUES ('optimize')")
        self.db.commit()
        self.db.execute("VACUUM")

    # -- reads -----------------------------------------------------------------------------
    def _item(self, row: tuple, score: float = 0.0) -> Item:
        item_id = row[0]
        parents = tuple(r[0] for r in self.db.execute(
            "SELECT parent FROM derivations WHERE child = ? ORDER BY parent", (item_id,)))
        mentions = tuple(r[0] for r in self.db.execute(
            "SELECT entity FROM mentions WHERE item_id = ? ORDER BY entity", (item_id,)))
        return Item(item_id, row[1], row[2], row[3], row[4], parents, mentions, score)

    def get(self, item_id: int) -> Item | None:
        row = self.db.execute("SELECT id, kind, text, status, generator FROM items WHERE id = ?", (item_id,)).fetchone()
        return self._item(row) if row else None

    def items(self, status: str | None = None) -> list[Item]:
        sql = "SELECT id, kind, text, status, generator FROM items"
        rows = self.db.execute(sql + (" WHERE status = ?" if status else "") + " ORDER BY id",
                               (status,) if status else ()).fetchall()
        return [self._item(r) for r in rows]

    def edges(self) -> list[tuple[int, int]]:
        """(child, parent) derived_from links."""
        return [(c, p) for c, p in self.db.execute("SELECT child, parent FROM derivations ORDER BY child, parent")]

    def mentioning(self, entity: str) -> list[int]:
        return [r[0] for r in self.db.execute("SELECT item_id FROM mentions WHERE entity = ? ORDER BY item_id",
                                              (entity,))]

    def search(self, query: str, k: int = 4) -> list[Item]:
        """The k best active items for `query` by BM25 (an empty list when nothing matches)."""
        match = fts_query(query)
        if not match:
            return []
        rows = self.db.execute(
            "SELECT i.id, i.kind, i.text, i.status, i.generator, bm25(items_fts) AS s FROM items_fts "
            "JOIN items i ON i.id = items_fts.rowid WHERE items_fts MATCH ? AND i.status = 'active' "
            "ORDER BY s LIMIT ?", (match, k)).fetchall()
        return [self._item(r[:5], score=-float(r[5])) for r in rows]

    def index_terms(self) -> set[str]:
        """Every term that has postings in the retrieval index."""
        self.db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.fts_vocab USING fts5vocab(main, items_fts, row)")
        return {r[0] for r in self.db.execute("SELECT term FROM temp.fts_vocab")}

    def events(self) -> list[dict]:
        rows = self.db.execute("SELECT at, action, item_id, detail FROM events ORDER BY id").fetchall()
        return [{"at": a, "action": b, "item_id": c, "detail": d} for a, b, c, d in rows]

    def stats(self) -> dict:
        def count(sql: str) -> int:
            return self.db.execute(sql).fetchone()[0]

        return {
            "items": count("SELECT COUNT(*) FROM items"),
            "active": count("SELECT COUNT(*) FROM items WHERE status = 'active'"),
            "by_kind": dict(self.db.execute("SELECT kind, COUNT(*) FROM items GROUP BY kind ORDER BY kind").fetchall()),
            "derived_multi_source": count(
                "SELECT COUNT(*) FROM (SELECT child FROM derivations GROUP BY child HAVING COUNT(*) > 1)"),
            "entities": count("SELECT COUNT(*) FROM entities"),
            "blocklist": count("SELECT COUNT(*) FROM blocklist"),
        }

    def dump(self) -> dict:
        """The memory's whole logical content (for round-trip checks and reports)."""
        return {
            "items": [i.to_dict() for i in self.items()],
            "blocklist": [list(r) for r in self.db.execute("SELECT form, kind, source FROM blocklist ORDER BY form, kind")],
            "entities": self.entities(),
        }

    def digest(self) -> str:
        """A content hash of :meth:`dump` (independent of the file's page layout)."""
        import hashlib

        return hashlib.sha256(json.dumps(self.dump(), sort_keys=True).encode()).hexdigest()
