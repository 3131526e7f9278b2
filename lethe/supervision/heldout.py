"""Held-out supervision: part of what MAGE mined never reaches training, so forgetting can be judged
on facts the unlearning never saw.

The split is by graph node, not by row: each memory node (the `node` of a QA row) is assigned to
`train`, `dev` (the adaptive budget's stop rule) or `audit` (the gate), seeded. A row goes to the
first of audit / dev whose nodes it touches (its `node`, or either end of its `edge`). Then no
training row may *mention* a held-out node anywhere in its question or answer: the same sentence
often supports several edges, and a paraphrase would otherwise carry a held-out fact into training.
Rows without nodes (the gold and DirectQA baselines) are split row by row.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from lethe.errors import LetheError
from lethe.supervision.synthesize import QASample, contains_key

PARTS = ("train", "dev", "audit")


@dataclass
class HeldoutSplit:
    """The three parts of a forget set and how they were drawn (recorded in lineage)."""

    train: list[QASample]
    dev: list[QASample]
    audit: list[QASample]
    nodes: dict[str, list[str]] = field(default_factory=dict)  # part -> node names
    dropped_for_leakage: int = 0
    seed: int = 0
    shares: dict[str, float] = field(default_factory=dict)

    def record(self) -> dict:
        """What synthesis.json keeps about the split."""
        return {"seed": self.seed, "shares": self.shares, "nodes": self.nodes,
                "rows": {p: len(getattr(self, p)) for p in PARTS}, "dropped_for_leakage": self.dropped_for_leakage}


def check_shares(audit_share: float, dev_share: float) -> None:
    """Shares must leave something for every part."""
    if not 0 < audit_share < 1:
        raise LetheError(f"audit.heldout_share is {audit_share}: it must be above 0 (nothing would be held out "
                         "for the audit) and below 1 (nothing would be left to train on)")
    if not 0 <= dev_share < 1 or audit_share + dev_share >= 1:
        raise LetheError(f"audit.dev_share {dev_share} + audit.heldout_share {audit_share} must stay below 1")


def _row_nodes(row: QASample, anchor: str) -> set[str]:
    return {n for n in (row.node, *row.edge) if n and n != anchor}


def split_forget_set(rows: Sequence[QASample], anchor: str, node_keys: dict[str, str], audit_share: float,
                     dev_share: float, seed: int) -> HeldoutSplit:
    """Split `rows` into train / dev / audit by node (see the module docstring).

    Nodes are taken in a seeded order; a node joins a held-out part unless the rows it would claim
    (its own rows, and training rows that mention it) overshoot that part's share of the rows by
    half: a hub memory that appears in most sentences would otherwise empty the training set.
    node_keys: node name -> normalized key (the graph's `key`), to find mentions in training text.
    """
    check_shares(audit_share, dev_share)
    nodes = sorted({n for row in rows for n in _row_nodes(row, anchor)})
    shares = {"audit": audit_share, "dev": dev_share}
    if not nodes:  # baselines: one row, one fact
        return _split_rows(rows, audit_share, dev_share, seed, shares)
    if len(nodes) < 3:
        raise LetheError(f"the forget set touches only {len(nodes)} memory node(s): too few to hold any out for "
                         "the audit (the entity is barely memorized; see the memory graph)")
    order = nodes[:]
    random.Random(seed).shuffle(order)
    claims = {n: {i for i, row in enumerate(rows)
                  if n in _row_nodes(row, anchor) or _mentions(row, node_keys.get(n, n.lower()))} for n in order}
    part_of: dict[str, str] = {}
    claimed: set[int] = set()
    for part, share in (("audit", audit_share), ("dev", dev_share)):
        target, taken = share * len(rows), set()
        for node in order:
            if share == 0 or len(taken) >= target:
                break
            new = claims[node] - claimed
            if node in part_of or not new or len(taken | new) > 1.5 * target:
                continue
            part_of[node] = part
            taken |= new
        claimed |= taken
    if "audit" not in part_of.values():
        raise LetheError("no memory node can be held out for the audit without taking most of the forget set: every "
                         "node is mentioned in most rows (see the memory graph)")
    parts: dict[str, list[QASample]] = {p: [] for p in PARTS}
    for row in rows:
        touched = {part_of.get(n, "train") for n in _row_nodes(row, anchor)}
        parts["audit" if "audit" in touched else "dev" if "dev" in touched else "train"].append(row)
    held_keys = [node_keys.get(n, n.lower()) for n in part_of]
    held_answers = {" ".join(r.answer.lower().split()) for p in ("audit", "dev") for r in parts[p]}
    train = [r for r in parts["train"] if not _leaks(r, held_keys, held_answers)]
    dropped = len(parts["train"]) - len(train)
    if not train:
        raise LetheError("every training row mentions a held-out memory: nothing left to train on "
                         "(lower audit.heldout_share)")
    return HeldoutSplit(train, parts["dev"], parts["audit"],
                        {p: sorted(n for n, q in part_of.items() if q == p) for p in ("dev", "audit")}
                        | {"train": sorted(n for n in nodes if n not in part_of)}, dropped, seed, shares)


def _mentions(row: QASample, key: str) -> bool:
    return contains_key(f"{row.question} {row.answer}", key)


def _leaks(row: QASample, held_keys: Sequence[str], held_answers: set[str]) -> bool:
    if " ".join(row.answer.lower().split()) in held_answers:
        return True
    return any(_mentions(row, key) for key in held_keys)


def _split_rows(rows: Sequence[QASample], audit_share: float, dev_share: float, seed: int,
                shares: dict[str, float]) -> HeldoutSplit:
    if len(rows) < 3:
        raise LetheError(f"the forget set has {len(rows)} row(s): too few to hold any out for the audit")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_audit = max(1, round(audit_share * len(rows)))
    n_dev = max(1, round(dev_share * len(rows))) if dev_share > 0 else 0
    if n_audit + n_dev >= len(rows):
        raise LetheError("the held-out shares leave no forget row to train on")
    audit = [rows[i] for i in sorted(order[:n_audit])]
    dev = [rows[i] for i in sorted(order[n_audit:n_audit + n_dev])]
    train = [rows[i] for i in sorted(order[n_audit + n_dev:])]
    return HeldoutSplit(train, dev, audit, {}, 0, seed, shares)
