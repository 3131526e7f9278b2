"""Held-out supervision: part of what MAGE mined never reaches training, so forgetting can be judged
on facts the unlearning never saw.

The split is by graph node, not by row: each memory node (the `node` of a QA row) is assigned to
`train`, `dev` (the adaptive budget's stop rule) or `audit` (the gate), seeded. A row goes to the
first of audit / dev whose nodes it touches (its `node`, or either end of its `edge`). Then no
training row may *mention* a held-out node anywhere in its question or answer: the same sentence
often supports several edges, and a paraphrase would otherwise carry a held-out fact into training.
Rows without nodes (the gold and DirectQA baselines) are split row by row.

Held-out probes must be what the model says (`QASample.asked`: a greedy answer's row,
lethe.supervision.greedy): a templated question over a sampled sentence is a probe whose answer the
model never states, and its recall before unlearning is shared phrasing. So where there are greedy rows,
what is held out is the memories of one greedy answer as a set (`_candidates`; a hub, which too many
answers name, never), a greedy row naming both held-out and trained memories is dropped, a held-out part
keeps only its greedy rows where it has any (the templated ones are dropped, counted in
`templated_dropped`), and a training row that asks a held-out probe's question is dropped too: training
"What awards has X received?" away on one answer would hide every other answer to it. A held-out part's
share counts the probes it holds, not the answers its memories touch (most of those are dropped).
The audit part holds at least `min_audit` probes (the gate's `gate.min_heldout_probes`: fewer cannot be
judged) where that takes at most half of the rows that count: a share alone leaves a thin entity's audit
under the gate's floor (10 asked rows at 0.2 hold 2). A held-out part whose share no memory fits (each
overshoots it by half) takes the first that fits within that half instead of staying empty: an empty dev
part turns the adaptive budget into a fixed one. Where no greedy answer can be held out within the shares,
the split falls back to node by node (`held_out_by`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

from lethe.errors import LetheError
from lethe.supervision.synthesize import QASample, contains_key

PARTS = ("train", "dev", "audit")
MAX_FLOOR_SHARE = 0.5  # min_audit is held only where it is at most this share of the rows that count


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
    templated_dropped: dict[str, int] = field(default_factory=dict)  # held-out part -> rows not asked, dropped
    held_out_by: str = "nodes"  # or "greedy answers" (the memories of one greedy answer held out as one)
    min_audit: int = 0  # probes the audit part holds at least, where the rows allow (gate.min_heldout_probes)

    def record(self) -> dict:
        """What synthesis.json keeps about the split."""
        return {"seed": self.seed, "shares": self.shares, "nodes": self.nodes,
                "rows": {p: len(getattr(self, p)) for p in PARTS}, "dropped_for_leakage": self.dropped_for_leakage,
                "templated_dropped": self.templated_dropped, "held_out_by": self.held_out_by,
                "min_audit": self.min_audit,
                "asked": {p: sum(r.asked for r in getattr(self, p)) for p in PARTS}}


def check_shares(audit_share: float, dev_share: float) -> None:
    """Shares must leave something for every part."""
    if not 0 < audit_share < 1:
        raise LetheError(f"audit.heldout_share is {audit_share}: it must be above 0 (nothing would be held out "
                         "for the audit) and below 1 (nothing would be left to train on)")
    if not 0 <= dev_share < 1 or audit_share + dev_share >= 1:
        raise LetheError(f"audit.dev_share {dev_share} + audit.heldout_share {audit_share} must stay below 1")


def _floor_fits(wanted: int, counted: int) -> bool:
    """Whether a held-out part may hold `wanted` of `counted` rows beyond its share (at most MAX_FLOOR_SHARE of
    them): the audit's floor of probes, or the one memory an otherwise empty part takes."""
    return counted > 0 and wanted <= MAX_FLOOR_SHARE * counted


def _row_nodes(row: QASample, anchor: str) -> set[str]:
    return {n for n in (row.node, *row.edge, *row.mentions) if n and n != anchor}


def split_forget_set(rows: Sequence[QASample], anchor: str, node_keys: dict[str, str], audit_share: float,
                     dev_share: float, seed: int, min_audit: int = 0) -> HeldoutSplit:
    """Split `rows` into train / dev / audit by node (see the module docstring).

    Candidates (the memories of one greedy answer, or single nodes) are taken in a seeded order
    (`_candidates`, `_hold_out`); a hub memory that appears in most sentences is never held out.
    node_keys: node name -> normalized key (the graph's `key`), to find mentions in training text.
    min_audit: the audit part holds at least this many probes where that is at most half of the rows that count.
    """
    check_shares(audit_share, dev_share)
    nodes = sorted({n for row in rows for n in _row_nodes(row, anchor)})
    shares = {"audit": audit_share, "dev": dev_share}
    if not nodes:  # baselines: one row, one fact
        return _split_rows(rows, audit_share, dev_share, seed, shares, min_audit)
    if len(nodes) < 3:
        raise LetheError(f"the forget set touches only {len(nodes)} memory node(s): too few to hold any out for "
                         "the audit (the entity is barely memorized; see the memory graph)")
    claims = {n: {i for i, row in enumerate(rows)
                  if n in _row_nodes(row, anchor) or _mentions(row, node_keys.get(n, n.lower()))} for n in nodes}
    by_answers = any(row.asked for row in rows)
    part_of, hubs = _assign(rows, nodes, anchor, claims, shares, seed, by_answers, min_audit)
    if by_answers and "audit" not in part_of.values():
        # Too few greedy answers to hold any out within the shares (a barely memorized entity): node by node.
        by_answers = False
        part_of, hubs = _assign(rows, nodes, anchor, claims, shares, seed, by_answers, min_audit)
    if "audit" not in part_of.values():
        raise LetheError("no memory node can be held out for the audit without taking most of the forget set: every "
                         "node is mentioned in most rows (see the memory graph)")
    parts: dict[str, list[QASample]] = {p: [] for p in PARTS}
    split_answers = 0
    for row in rows:
        part = _part_of_row(row, anchor, part_of, hubs)
        if part is None:
            split_answers += 1
        else:
            parts[part].append(row)
    templated_dropped = {}
    for part in ("audit", "dev"):
        kept = [r for r in parts[part] if r.asked]
        templated_dropped[part] = len(parts[part]) - len(kept) if kept else 0
        parts[part] = kept or parts[part]
    held_keys = [node_keys.get(n, n.lower()) for n in part_of]
    held_answers = {_folded(r.answer) for p in ("audit", "dev") for r in parts[p]}
    held_questions = {_folded(r.question) for p in ("audit", "dev") for r in parts[p] if r.asked}
    train = [r for r in parts["train"] if not _leaks(r, held_keys, held_answers, held_questions)]
    dropped = len(parts["train"]) - len(train) + split_answers
    if not train:
        raise LetheError("every training row mentions a held-out memory: nothing left to train on "
                         "(lower audit.heldout_share)")
    return HeldoutSplit(train, parts["dev"], parts["audit"],
                        {p: sorted(n for n, q in part_of.items() if q == p) for p in ("dev", "audit")}
                        | {"train": sorted(n for n in nodes if n not in part_of)}, dropped, seed, shares,
                        templated_dropped, "greedy answers" if by_answers else "nodes", min_audit)


def _assign(rows: Sequence[QASample], nodes: Sequence[str], anchor: str, claims: dict[str, set[int]],
            shares: dict[str, float], seed: int, by_answers: bool,
            min_audit: int = 0) -> tuple[dict[str, str], set[str]]:
    """(node -> held-out part, hubs): by greedy answers (`by_answers`), a part's share counts the asked
    rows (the audit's raised to hold `min_audit` of them where they allow) and a hub (a memory more asked
    rows name than a part may hold: the entity's country, its genre) is never held out, so it does not bind
    the other memories of an answer to it; else node by node, shares counting every row."""
    unit = {i for i, row in enumerate(rows) if row.asked} if by_answers else set(range(len(rows)))
    # A thin entity's share of its probes can fall under the gate's floor: the audit part's share is raised to
    # hold min_audit of them where that is at most half of what counts. Not beyond: the audit would hold more of
    # the entity than training does, and the gate judges an entity that thin as too thin anyway.
    if _floor_fits(min_audit, len(unit)):
        shares = {**shares, "audit": max(shares["audit"], min_audit / len(unit))}
    hubs = {n for n in nodes if len(claims[n] & unit) > 1.5 * max(shares.values()) * len(unit)} if by_answers \
        else set()
    # By greedy answers a row lands in a part only when every memory it names (hubs aside) is held out there:
    # a part's share counts those rows, not the asked rows its memories merely touch (most of which are dropped).
    named = {i: frozenset(_row_nodes(rows[i], anchor) - hubs) for i in unit} if by_answers else None
    return _hold_out(_candidates(rows, nodes, anchor, hubs, seed, by_answers), claims, unit, len(rows), shares,
                     named), hubs


def _candidates(rows: Sequence[QASample], nodes: Sequence[str], anchor: str, hubs: set[str],
                seed: int, by_answers: bool) -> list[frozenset[str]]:
    """What may be held out as one, in a seeded order: by greedy answers, the memories (hubs aside) of
    each such answer, so that its probe tests held-out memories only (templated rows alone would be
    dropped from a held-out part, see the module docstring); else each node alone."""
    if by_answers:
        sets = {frozenset(_row_nodes(row, anchor) - hubs) for row in rows if row.asked} - {frozenset()}
    else:
        sets = {frozenset({n}) for n in nodes}
    order = sorted(sets, key=sorted)
    random.Random(seed).shuffle(order)
    return order


def _hold_out(candidates: Sequence[frozenset[str]], claims: dict[str, set[int]], unit: set[int], n_rows: int,
              shares: dict[str, float], named: dict[int, frozenset[str]] | None = None) -> dict[str, str]:
    """node -> held-out part. Candidates join a part, in order, until the rows it holds reach its share of
    the rows that count (`unit`). What it holds is the rows it claims (a candidate's own, and training rows
    that mention it), or with `named` (by greedy answers) only the asked rows whose named memories all lie in
    the part. A candidate is skipped if it overlaps another part, adds nothing held, or its claims overshoot
    the part's share by half: of `unit`, or of all rows (a hub would empty the training set).
    A part with a share that ends this pass empty takes the first candidate that fits within MAX_FLOOR_SHARE
    instead: an empty dev part would silently turn the adaptive budget into a fixed one."""
    part_of: dict[str, str] = {}
    claimed: set[int] = set()
    for part, share in shares.items():
        target, taken, members, held = share * len(unit), set(), set(), 0
        for nodes in candidates:
            if share == 0 or held >= target:
                break
            new = set().union(*(claims[n] for n in nodes)) - claimed
            would_hold = _held(taken | new, members | nodes, unit, named)
            elsewhere = any(part_of.get(n, part) != part for n in nodes)  # a memory this part holds may join again
            if elsewhere or would_hold <= held or len((taken | new) & unit) > 1.5 * target \
                    or len(taken | new) > 1.5 * share * n_rows:
                continue
            part_of.update({n: part for n in nodes})
            taken, members, held = taken | new, members | nodes, would_hold
        if share > 0 and not held:
            for nodes in candidates:
                new = set().union(*(claims[n] for n in nodes)) - claimed
                if any(n in part_of for n in nodes) or not _held(new, nodes, unit, named) \
                        or not _floor_fits(len(new & unit), len(unit)) or not _floor_fits(len(new), n_rows):
                    continue
                part_of.update({n: part for n in nodes})
                taken = new
                break
        claimed |= taken
    return part_of


def _held(taken: set[int], members: set[str], unit: set[int], named: dict[int, frozenset[str]] | None) -> int:
    """How many of the rows that count a part holds: those it claims, or (`named`) those it holds whole."""
    if named is None:
        return len(taken & unit)
    return sum(1 for i in unit if named[i] and named[i] <= members)


def _part_of_row(row: QASample, anchor: str, part_of: dict[str, str], hubs: set[str]) -> str | None:
    """The part a row goes to: the first held-out part it touches; an asked row only where every memory it
    names (hubs aside) is held out there, and none (dropped) where it names both held-out and trained ones."""
    named = _row_nodes(row, anchor)
    touched = {part_of.get(n, "train") for n in named}
    first = "audit" if "audit" in touched else "dev" if "dev" in touched else "train"
    if row.asked and first != "train" and {part_of.get(n, "train") for n in named - hubs} != {first}:
        return None
    return first


def _mentions(row: QASample, key: str) -> bool:
    return contains_key(f"{row.question} {row.answer}", key)


def _folded(text: str) -> str:
    return " ".join(text.lower().split())


def _leaks(row: QASample, held_keys: Sequence[str], held_answers: set[str], held_questions: set[str]) -> bool:
    if _folded(row.answer) in held_answers or _folded(row.question) in held_questions:
        return True
    return any(_mentions(row, key) for key in held_keys)


def _split_rows(rows: Sequence[QASample], audit_share: float, dev_share: float, seed: int,
                shares: dict[str, float], min_audit: int = 0) -> HeldoutSplit:
    if len(rows) < 3:
        raise LetheError(f"the forget set has {len(rows)} row(s): too few to hold any out for the audit")
    order = list(range(len(rows)))
    random.Random(seed).shuffle(order)
    n_audit = max(1, round(audit_share * len(rows)), min_audit if _floor_fits(min_audit, len(rows)) else 0)
    n_dev = max(1, round(dev_share * len(rows))) if dev_share > 0 else 0
    if n_audit + n_dev >= len(rows):
        raise LetheError("the held-out shares leave no forget row to train on")
    audit = [rows[i] for i in sorted(order[:n_audit])]
    dev = [rows[i] for i in sorted(order[n_audit:n_audit + n_dev])]
    train = [rows[i] for i in sorted(order[n_audit + n_dev:])]
    return HeldoutSplit(train, dev, audit, {}, 0, seed, shares, min_audit=min_audit)
