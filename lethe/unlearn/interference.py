"""Which other entities a forget step would hurt most: first-order interference, measured before training.

An ascent step of size eta along the forget gradient g_f (of the mean answer NLL on the forget rows)
changes an entity's NLL on its own rows by about eta <g_f, g_e> / |g_f|, with g_e the gradient of
that entity's NLL. If it named the look-alikes that unlearning wears away, the retain set could weigh
them most. Measured (bench/interference.py, stop 36), it does not. Over eight default-world requests
scored before the evaluation's row split, its rank correlation with the retention each entity lost was
-0.14 to 0.11. Over two requests scored after it, the correlation was -0.30 and -0.37. The entity
that fell furthest ranked 5th to 27th of 38. It is kept as that measurement, not as a training
option. It is taken on every model weight: a LoRA update is a low-rank part of it.
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
    parameters = list(model.parameters())
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
