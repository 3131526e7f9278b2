"""The memory pathway of SBU: forget an entity in the agent's memory.

1. seeds: items that name the target (tracked mentions, or any of its surface forms);
2. closure: the seeds and everything derived from them, transitively (cycles are fine);
3. an item of the closure is *isolated* when none of its ancestors lies outside the closure:
   it is deleted, with its index postings, mentions and links;
4. every other item of the closure is *shared*: it is invalidated (hidden from retrieval) and
   regenerated from its surviving sources with every sentence that names the target dropped;
5. the target's surface forms join the write-time blocklist, so the agent cannot write it back.

The planning half is pure (ids and links in, decisions out) so it is tested on small graphs.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

from lethe.agent.memory import MemoryStore
from lethe.agent.summarize import summarize


@dataclass(frozen=True)
class ForgetPlan:
    """Which items the memory pathway deletes and which it regenerates (in order)."""

    seeds: list[int]
    closure: list[int]
    delete: list[int]
    regenerate: list[int]

    def to_dict(self) -> dict:
        return asdict(self)


def _adjacency(edges: Iterable[tuple[int, int]]) -> tuple[dict[int, set[int]], dict[int, set[int]]]:
    parents: dict[int, set[int]] = {}
    children: dict[int, set[int]] = {}
    for child, parent in edges:
        parents.setdefault(child, set()).add(parent)
        children.setdefault(parent, set()).add(child)
    return parents, children


def dependency_closure(seeds: Iterable[int], children: Mapping[int, set[int]]) -> set[int]:
    """The seeds and everything derived from them (breadth-first; a visited set ends cycles)."""
    closure = set(seeds)
    queue = deque(closure)
    while queue:
        for child in children.get(queue.popleft(), ()):
            if child not in closure:
                closure.add(child)
                queue.append(child)
    return closure


def has_outside_support(item: int, parents: Mapping[int, set[int]], closure: set[int]) -> bool:
    """True when some ancestor of `item` lies outside the closure (content that survives)."""
    seen, queue = {item}, deque([item])
    while queue:
        for parent in parents.get(queue.popleft(), ()):
            if parent not in closure:
                return True
            if parent not in seen:
                seen.add(parent)
                queue.append(parent)
    return False


def regeneration_order(items: set[int], parents: Mapping[int, set[int]]) -> list[int]:
    """Parents before children (Kahn); a cycle is entered at its smallest id."""
    pending = set(items)
    order: list[int] = []
    while pending:
        ready = sorted(i for i in pending if not (parents.get(i, set()) & pending))
        step = ready or [min(pending)]
        order.extend(step)
        pending -= set(step)
    return order


def plan_forgetting(seeds: Iterable[int], edges: Iterable[tuple[int, int]]) -> ForgetPlan:
    """Delete isolated items of the seeds' closure; regenerate the shared ones."""
    seeds = set(seeds)
    parents, children = _adjacency(edges)
    closure = dependency_closure(seeds, children)
    shared = {i for i in closure if has_outside_support(i, parents, closure)}
    return ForgetPlan(sorted(seeds), sorted(closure), sorted(closure - shared), regeneration_order(shared, parents))


def memory_forget_queries(texts: Iterable[str], anchor: str) -> list[tuple[str, str]]:
    """(question, answer) pairs from removed memory items: a note's own question when it opens
    with one, else a generic question about the anchor."""
    from lethe.mining.extract import split_sentences

    pairs = []
    for text in texts:
        sentences = split_sentences(text)
        if len(sentences) > 1 and sentences[0].endswith("?"):
            pairs.append((sentences[0], " ".join(sentences[1:])))
        elif sentences:
            pairs.append((f"What do you know about {anchor}?", " ".join(sentences)))
    return list(dict.fromkeys(pairs))


def find_seeds(store: MemoryStore, anchor: str, surface_forms: Iterable[str]) -> list[int]:
    """Items that mention the target: tracked mentions of the anchor, or any surface form in the text."""
    from lethe.agent.leaks import surface_pattern

    pattern = surface_pattern([anchor, *surface_forms])
    found = set(store.mentioning(anchor))
    found.update(item.id for item in store.items() if pattern.search(item.text.replace("’", "'")))
    return sorted(found)


def forget_in_memory(store: MemoryStore, anchor: str, surface_forms: list[str], source: str,
                     extra_seeds: Iterable[int] = ()) -> dict:
    """Run the memory pathway for `anchor`; returns the plan and what was done (ids), plus
    `removed_texts`: the deleted items' text, which SBU turns into forget queries and then drops.

    extra_seeds: items found leaking without naming the target (the backflow audit's finds).
    """
    store.block([anchor, *surface_forms], "surface", source)
    guard = store.blocklist()
    seeds = set(find_seeds(store, anchor, surface_forms)) | {i for i in extra_seeds if store.get(i) is not None}
    edges = store.edges()
    plan = plan_forgetting(seeds, edges)
    parents, _ = _adjacency(edges)
    for item in plan.regenerate:
        store.invalidate(item, f"derived from forgotten content ({source})")
    removed_texts = [store.get(item).text for item in plan.delete]
    for item in plan.delete:
        store.delete(item, f"isolated in the closure of a forgotten entity ({source})")
    deleted, regenerated, emptied = set(plan.delete), [], []
    done: set[int] = set()
    regenerating = set(plan.regenerate)
    for item in plan.regenerate:
        usable = sorted(p for p in parents.get(item, set())
                        if p not in deleted and p not in emptied and (p not in regenerating or p in done))
        text = summarize([store.get(p).text for p in usable], keep=lambda s: guard.reason(s) is None)
        if text:
            store.regenerate(item, text, usable, f"regenerated from {len(usable)} surviving sources ({source})")
            regenerated.append(item)
            done.add(item)
        else:
            store.delete(item, f"nothing survives of its sources ({source})")
            emptied.append(item)
    store.compact()
    return {"plan": plan.to_dict(), "deleted": sorted(deleted | set(emptied)), "regenerated": regenerated,
            "blocklist": store.blocklist().surface_forms, "removed_texts": removed_texts}
