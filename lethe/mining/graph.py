"""MAGE steps 1-3: elicit the anchor, score memories, expand hop by hop into a memory graph.

Graph: a networkx DiGraph whose node names are the memories' surface text (the anchor is the
root). Node attributes: key, kind, strength, hop, count, provenance (response ids). Edge u -> v:
``count`` c(u,v) (responses conditioned on u that mention v), ``strength`` c(u,v)/N and
``weight`` c(u,v) / sum_v' c(u,v') (the walk's transition weight). Edges v -> anchor carry the
share of v's responses that point back to the target (used by the adaptive stop).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import networkx as nx

from lethe.config import ElicitParams, ExpandParams, ScoreParams
from lethe.fileio import write_atomic
from lethe.llm.backend import Backend
from lethe.mining.extract import Mention
from lethe.mining.score import (
    NodeScore,
    Response,
    anchor_aliases,
    mentions_anchor,
    mentions_by_response,
    recognition,
    score,
)


@dataclass
class MiningStats:
    """What mining cost and where it stopped."""

    model_calls: int = 0
    hops_done: int = 0
    stopped_by: str = "max_hops"
    back_strength: list[float] = field(default_factory=list)


def _repeat(prompts: Sequence[str], n: int) -> list[str]:
    """Each prompt n times (N samples per prompt)."""
    return [p for p in prompts for _ in range(n)]


def elicit(backend: Backend, questions: Sequence[str], cfg: ElicitParams, hop: int, seed: int,
           id_prefix: str, context: str | None = None) -> list[Response]:
    """One sampled response per question (each prompt already repeated N times), batched."""
    texts = backend.sample(list(questions), 1, cfg.temperature, cfg.top_p, cfg.max_new_tokens, seed)
    return [
        Response(f"{id_prefix}-{i}", q, t[0], hop, context)
        for i, (q, t) in enumerate(zip(questions, texts))
    ]


def _add_node(graph: nx.DiGraph, node: NodeScore, hop: int) -> str:
    existing = next((n for n, d in graph.nodes(data=True) if d.get("key") == node.key), None)
    if existing is not None:
        data = graph.nodes[existing]
        data["provenance"] = sorted(set(data["provenance"]) | set(node.provenance))
        data["strength"] = max(data["strength"], node.strength)
        return existing
    name = node.surface if node.surface not in graph else f"{node.surface} ({node.kind})"
    graph.add_node(name, key=node.key, kind=node.kind, strength=node.strength, hop=hop,
                   count=node.count, provenance=list(node.provenance))
    return name


def _link(graph: nx.DiGraph, source: str, kept: Sequence[tuple[str, NodeScore]]) -> None:
    if not kept:
        return
    total = sum(node.count for _, node in kept)
    for name, node in kept:
        graph.add_edge(source, name, count=node.count, strength=node.strength, weight=node.count / total)


def elicit_anchor(backend: Backend, anchor: str, cfg: ElicitParams, description: str | None = None) -> list[Response]:
    """MAGE step 1: N sampled recalls of the anchor for each elicitation prompt."""
    subject = f"{anchor} ({description})" if description else anchor
    questions = _repeat([p.format(anchor=subject) for p in cfg.prompts], cfg.samples)
    return elicit(backend, questions, cfg, 0, cfg.seed, "h0")


def seed_graph(anchor: str, responses: Sequence[Response], cfg: ScoreParams) -> nx.DiGraph:
    """MAGE step 2: the anchor and its memories with s(v) >= tau (hop 1), edges weighted.

    When too few recalls name the anchor (the model does not recognize it, or refuses), the graph
    is left empty: whatever the model says about an unknown name is not a memory of it.
    """
    aliases = anchor_aliases(anchor)
    recognized = recognition(responses, aliases)
    graph = nx.DiGraph(anchor=anchor, recognition=recognized)
    graph.add_node(anchor, key="::anchor", kind="anchor", strength=1.0, hop=0, count=0, provenance=[])
    if recognized < cfg.min_recognition:
        return graph  # the model does not know the anchor: nothing memorized
    kept = score(responses, aliases, cfg.tau)
    _link(graph, anchor, [(_add_node(graph, node, 1), node) for node in kept])
    return graph


def grounded_share(responses: Sequence[Response], mentions: dict[str, list[Mention]], aliases: set[str],
                   memories: set[str]) -> float:
    """Share of `responses` that point back to the target: they name it and recall one of its memories.

    Expansion prompts carry the anchor, so a model echoes the name whether or not it still talks
    about the target; a response counts only if it also mentions one of the target's own memories
    (`memories`: hop-1 node keys, the expanded node's key excluded).
    """
    if not responses:
        return 0.0
    hits = sum(
        mentions_anchor(r.text, aliases) and any(m.key in memories for m in mentions.get(r.id, []))
        for r in responses
    )
    return hits / len(responses)


def expand_graph(
    backend: Backend,
    graph: nx.DiGraph,
    responses: list[Response],
    elicit_cfg: ElicitParams,
    score_cfg: ScoreParams,
    expand_cfg: ExpandParams,
) -> MiningStats:
    """MAGE step 3: grow `graph` (in place) hop by hop from the anchor's memories.

    Each frontier node u (strongest first, at most max_nodes_per_hop, within the call budget) is
    expanded with its kind's templates, N samples each. u's edge back to the anchor carries the
    share of its responses that point back to the target (`grounded_share`). With the adaptive
    stop, memories found from a node that drifted (back < stop_threshold) are kept but not expanded
    further, and expansion ends when the strength-weighted mean back share of a hop is under the
    threshold.
    """
    anchor = graph.graph["anchor"]
    stats = MiningStats(model_calls=len(responses))
    frontier = _strongest_first(
        (n, NodeScore(d["key"], n, d["kind"], d["count"], d["strength"], d["provenance"]))
        for n, d in graph.nodes(data=True) if d.get("hop") == 1)
    memories = {node.key for _, node in frontier}
    for hop in range(1, expand_cfg.hops + 1):
        batch, owners, chosen = _hop_prompts(frontier, anchor, expand_cfg,
                                             expand_cfg.max_model_calls - stats.model_calls)
        if not chosen:
            stats.stopped_by = "budget" if frontier else "empty_frontier"
            break
        texts = backend.sample(batch, 1, elicit_cfg.temperature, elicit_cfg.top_p,
                               elicit_cfg.max_new_tokens, elicit_cfg.seed + hop)
        stats.model_calls += len(batch)
        hop_responses = [Response(f"h{hop}-{i}", q, t[0], hop, owner)
                         for i, (q, t, owner) in enumerate(zip(batch, texts, owners))]
        responses.extend(hop_responses)
        next_frontier, mean_back = _grow(graph, chosen, hop_responses, hop, memories, score_cfg, expand_cfg)
        stats.back_strength.append(mean_back)
        stats.hops_done = hop
        frontier = _strongest_first(next_frontier)
        if expand_cfg.adaptive_stop and mean_back < expand_cfg.stop_threshold:
            stats.stopped_by = "adaptive"
            break
    return stats


def _strongest_first(nodes) -> list[tuple[str, NodeScore]]:
    return sorted(nodes, key=lambda item: (-item[1].strength, item[0]))


def _hop_prompts(frontier: list[tuple[str, NodeScore]], anchor: str, cfg: ExpandParams,
                 budget_left: int) -> tuple[list[str], list[str], list[tuple[str, NodeScore]]]:
    """The hop's prompts (each repeated `samples` times), the memory each one expands, and the frontier
    nodes expanded: strongest first, at most max_nodes_per_hop, within the model-call budget."""
    batch: list[str] = []
    owners: list[str] = []
    chosen: list[tuple[str, NodeScore]] = []
    for name, node in frontier[: cfg.max_nodes_per_hop]:
        templates = cfg.templates_for(node.kind)
        if len(batch) + cfg.samples * len(templates) > budget_left:
            break
        batch.extend(_repeat([t.format(anchor=anchor, node=node.surface) for t in templates], cfg.samples))
        owners.extend([node.key] * (cfg.samples * len(templates)))
        chosen.append((name, node))
    return batch, owners, chosen


def _grow(graph: nx.DiGraph, chosen: list[tuple[str, NodeScore]], hop_responses: list[Response], hop: int,
          memories: set[str], score_cfg: ScoreParams,
          expand_cfg: ExpandParams) -> tuple[list[tuple[str, NodeScore]], float]:
    """Add what each expanded node's responses recalled (and its edge back to the anchor); returns the
    next frontier and the hop's strength-weighted mean back share."""
    anchor = graph.graph["anchor"]
    aliases = anchor_aliases(anchor)
    mentions = mentions_by_response(hop_responses, aliases)
    next_frontier: list[tuple[str, NodeScore]] = []
    weighted_back = total_strength = 0.0
    for name, node in chosen:
        own = [r for r in hop_responses if r.context == node.key]
        back = grounded_share(own, mentions, aliases, memories - {node.key})
        weighted_back += node.strength * back
        total_strength += node.strength
        graph.add_edge(name, anchor, count=round(back * len(own)), strength=back, weight=back)
        found = [n for n in score(own, aliases, score_cfg.tau, mentions) if n.key != node.key]
        linked = [(_add_node(graph, n, hop + 1), n) for n in found]
        _link(graph, name, linked)
        if expand_cfg.adaptive_stop and back < expand_cfg.stop_threshold:
            continue  # drifted away from the target: keep what it recalled, do not grow from it
        next_frontier.extend((nm, n) for nm, n in linked if graph.nodes[nm]["hop"] == hop + 1)
    return next_frontier, weighted_back / total_strength if total_strength else 0.0


def mine_graph(
    backend: Backend,
    anchor: str,
    elicit_cfg: ElicitParams,
    score_cfg: ScoreParams,
    expand_cfg: ExpandParams,
    description: str | None = None,
) -> tuple[nx.DiGraph, list[Response], MiningStats]:
    """Steps 1-3 in one call: the weighted memory graph of `anchor` from the model's own recalls."""
    responses = elicit_anchor(backend, anchor, elicit_cfg, description)
    graph = seed_graph(anchor, responses, score_cfg)
    stats = expand_graph(backend, graph, responses, elicit_cfg, score_cfg, expand_cfg)
    return graph, responses, stats


def save_graph(graph: nx.DiGraph, path: Path) -> None:
    """Node-link JSON (loadable with networkx.node_link_graph(..., edges='edges'))."""
    write_atomic(path, json.dumps(nx.node_link_data(graph, edges="edges"), indent=1, default=str))


def load_graph(path: Path) -> nx.DiGraph:
    """Inverse of save_graph."""
    return nx.node_link_graph(json.loads(path.read_text()), edges="edges")


def save_responses(responses: Sequence[Response], path: Path) -> None:
    write_atomic(path, "".join(json.dumps(asdict(r)) + "\n" for r in responses))


def load_responses(path: Path) -> list[Response]:
    return [Response(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


KIND_COLORS = {"anchor": "#d62728", "entity": "#1f77b4", "title": "#9467bd", "date": "#2ca02c",
               "concept": "#ff7f0e"}


def is_noise(name: str, data: dict) -> bool:
    """Extraction noise: a memory whose text is a function word or too short to name anything."""
    from lethe.mining.extract import STOP_CAPS

    key = str(data.get("key", name)).strip().lower()
    return data.get("kind") != "anchor" and (len(key) < 3 or key in {w.lower() for w in STOP_CAPS}
                                             or key in {"and", "the", "his", "her", "its", "was", "with"})


def _layered_layout(graph: nx.DiGraph, nodes: list[str]) -> dict[str, tuple[float, float]]:
    """Columns by hop (anchor left), nodes in a column spread evenly and ordered by strength."""
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(int(graph.nodes[n].get("hop", 0)), []).append(n)
    layout = {}
    for hop, members in columns.items():
        members.sort(key=lambda n: -graph.nodes[n].get("strength", 0))
        for i, n in enumerate(members):
            layout[n] = (hop * 3.0, (len(members) - 1) / 2 - i)
    return layout


def draw_graph(graph: nx.DiGraph, path: Path) -> None:
    """PNG of the graph: one column per hop, colour by memory kind, size by strength, edge width by
    weight; extraction noise listed apart instead of drawn; a legend for kinds and strength."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    anchor = graph.graph.get("anchor")
    noise = sorted(n for n, d in graph.nodes(data=True) if is_noise(n, d))
    nodes = [n for n in graph.nodes if n not in noise]
    shown = graph.subgraph(nodes)
    layout = _layered_layout(graph, nodes)
    tallest = max((sum(1 for n in nodes if graph.nodes[n].get("hop") == h) for h in {graph.nodes[n].get("hop", 0)
                                                                                    for n in nodes}), default=1)
    fig, ax = plt.subplots(figsize=(14, max(6, 0.45 * tallest + 2)))
    forward = [(u, v) for u, v in shown.edges if v != anchor]
    nx.draw_networkx_edges(shown, layout, edgelist=forward, ax=ax, arrows=True, alpha=0.35, edge_color="#555555",
                           width=[0.5 + 5 * shown.edges[e]["weight"] for e in forward])
    colors = [KIND_COLORS.get(graph.nodes[n].get("kind"), "#7f7f7f") for n in nodes]
    sizes = [900 if n == anchor else 120 + 700 * graph.nodes[n].get("strength", 0) for n in nodes]
    nx.draw_networkx_nodes(shown, layout, nodelist=nodes, node_color=colors, node_size=sizes, alpha=0.9, ax=ax)
    for n in nodes:
        x, y = layout[n]
        label = n if len(n) <= 28 else n[:26] + "…"
        ax.text(x + 0.12, y, label, fontsize=8, va="center", ha="left",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.75})
    hops = sorted({int(graph.nodes[n].get("hop", 0)) for n in nodes})
    for hop in hops:
        ax.text(hop * 3.0, (tallest + 1) / 2, "anchor" if hop == 0 else f"hop {hop}", ha="center",
                fontsize=10, weight="bold")
    kinds = [Line2D([], [], marker="o", ls="", color=c, label=k, markersize=8) for k, c in KIND_COLORS.items()]
    strengths = [Line2D([], [], marker="o", ls="", color="#999999", label=f"strength {s}",
                        markersize=(120 + 700 * s) ** 0.5 / 2) for s in (0.3, 0.6, 1.0)]
    ax.legend(handles=kinds + strengths, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, frameon=False)
    if noise:
        ax.text(1.01, 0.02, "left out (extraction noise):\n" + "\n".join(noise[:12]), transform=ax.transAxes,
                fontsize=7, va="bottom", color="#777777")
    ax.set_title(f"Memory graph of {anchor!r}: {len(nodes) - 1} memories over {max(hops, default=0)} hop(s); "
                 "edge width = co-elicitation weight", pad=18)
    ax.set_xlim(-0.5, max(hops, default=0) * 3.0 + 2.5)
    ax.set_ylim(-(tallest + 1) / 2, (tallest + 2) / 2)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
