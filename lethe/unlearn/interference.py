"""Which other entities a forget step would hurt most: first-order interference, measured before training.

An ascent step of size eta along the forget gradient g_f (of the mean answer NLL on the forget rows)
changes an entity's NLL on its own rows by about eta <g_f, g_e> / |g_f|, with g_e the gradient of
that entity's NLL. The entities with the largest positive value are the look-alikes forgetting the
target wears away (on the default world, Aisha Al-Hamad for Basil Mahfouz Al-Kuwaiti), and where the
retain set should weigh most. Taken on every model weight: a LoRA update is a low-rank part of it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from lethe.errors import LetheError
from lethe.llm.backend import Backend
from lethe.llm.batching import collate_qa

Pairs = Sequence[tuple[str, str]]


def nll_gradient(backend: Backend, pairs: Pairs, batch_size: int) -> torch.Tensor:
    """The gradient (flattened over every weight) of the mean answer NLL of `pairs`."""
    model, pad = backend.model, backend.tokenizer.pad_token_id
    parameters = [p for p in model.parameters()]
    for parameter in parameters:
        parameter.grad = None
    encoded = [backend.format.encode(q, a) for q, a in pairs]
    with torch.enable_grad():
        for start in range(0, len(encoded), batch_size):
            chunk = encoded[start : start + batch_size]
            batch = {k: v.to(backend.device) for k, v in collate_qa(chunk, pad).items()}
            (model(**batch).loss * len(chunk) / len(encoded)).backward()
    flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).flatten().float() for p in parameters])
    for parameter in parameters:
        parameter.grad = None
    return flat


def forget_interference(backend: Backend, forget: Pairs, rows_by_entity: Mapping[str, Pairs],
                        batch_size: int = 8) -> dict[str, float]:
    """<g_forget, g_entity> / |g_forget| for every entity: the first-order rise of its rows' NLL per
    unit ascent step on the forget rows (positive: forgetting the target hurts it)."""
    if not forget:
        raise LetheError("interference needs forget rows to take the forget gradient on")
    flags = [p.requires_grad for p in backend.model.parameters()]
    try:
        for parameter in backend.model.parameters():
            parameter.requires_grad_(True)
        forget_grad = nll_gradient(backend, forget, batch_size)
        norm = forget_grad.norm().clamp(min=1e-12)
        return {entity: float(forget_grad @ nll_gradient(backend, rows, batch_size) / norm)
                for entity, rows in rows_by_entity.items() if rows}
    finally:
        for parameter, flag in zip(backend.model.parameters(), flags):
            parameter.requires_grad_(flag)


def focus_allocation(risk: Mapping[str, float], rows: int) -> dict[str, int]:
    """`rows` extra rows shared among the entities in proportion to their positive risk (largest
    remainders first); an entity a forget step does not hurt gets none."""
    positive = {e: r for e, r in risk.items() if r > 0}
    total = sum(positive.values())
    if rows <= 0 or total <= 0:
        return {}
    exact = {e: rows * r / total for e, r in positive.items()}
    counts = {e: int(v) for e, v in exact.items()}
    for entity in sorted(exact, key=lambda e: exact[e] - counts[e], reverse=True)[: rows - sum(counts.values())]:
        counts[entity] += 1
    return {e: n for e, n in sorted(counts.items(), key=lambda kv: -kv[1]) if n}
