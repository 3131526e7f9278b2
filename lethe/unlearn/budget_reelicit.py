"""The adaptive budget's re-elicitation check: the audit's re-elicitation, on a draw of its own.

A checkpoint whose dev probes are forgotten may still name the entity's memories when it is simply
asked about it again: the gate's re-elicitation check rejected two of stop 47's nine requests that
the budget had kept (Basil Mahfouz Al-Kuwaiti's "florist", Nikolai Abilov's "African American"). A
point the budget would keep is elicited the way the audit elicits the final model (the anchor's
elicitation prompts, audit.reelicit_samples each, scored against the mined graph's strong memories:
lethe.evaluate.audit.reelicit), and must stay within the gate's bound (lethe.evaluate.floor.reelicit_limit)
of what a never-trained reference says, elicited once when the check is built.

The samples are drawn with their own seed (`SEED_OFFSET` past audit.reelicit_seed), not the gate's:
the budget must not pick the checkpoint that happens to stay silent on the exact draw the gate then uses.
"""

from __future__ import annotations

from pathlib import Path

import networkx as nx
import torch

from lethe.config import Params
from lethe.errors import LetheError
from lethe.layout import MineLayout
from lethe.llm.backend import Backend

SEED_OFFSET = 104_729


class ReelicitCheck:
    """`model -> {"reelicit_return", "reelicit_floor", "reelicit_ok"}` for one anchor (see the module
    docstring); built by `reelicit_check`."""

    def __init__(self, params: Params, anchor: str, graph: nx.DiGraph, never: Backend | None, tokenizer):
        from lethe.evaluate.floor import reelicit_limit

        audit = params.audit.model_copy(update={"reelicit_seed": params.audit.reelicit_seed + SEED_OFFSET})
        self.params = params.model_copy(update={"audit": audit})
        self.anchor, self.graph, self.tokenizer = anchor, graph, tokenizer
        self.floor = self._return(never) if never is not None else None
        self.limit = reelicit_limit(self.floor, params.gate)

    def _return(self, backend: Backend) -> float:
        from lethe.evaluate.audit import reelicit

        return reelicit(backend, self.anchor, self.graph, self.params)["return"] or 0.0

    def __call__(self, model: torch.nn.Module) -> dict:
        """The point's re-elicitation; the sampling seeds its own generator, so training's RNG is left as it was."""
        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            back = self._return(Backend(model, self.tokenizer, self.params.backend.batch_size))
        return {"reelicit_return": back, "reelicit_floor": self.floor, "reelicit_ok": back <= self.limit}


def reelicit_check(params: Params, forget_set: Path, anchors: set[str], never: Backend | None,
                   tokenizer, model: str | Path) -> ReelicitCheck | None:
    """The budget's re-elicitation check when unlearn.stop_reelicit is on, else None; None too when the
    graph has no strong memory to re-elicit (the gate's check is n/a then). `never`: the never-trained
    reference, loaded (None: the gate's bound without a reference); `model`: the starting model, whose
    other entities leave the graph as they do in the audit (lethe.evaluate.audit.audited_graph). A clear
    error for a forget set without one anchor or without the memory graph beside it."""
    if not params.unlearn.stop_reelicit:
        return None
    from lethe.evaluate.audit import audited_graph, strong_memories

    if len(anchors) != 1:
        raise LetheError("unlearn.stop_reelicit elicits the request's anchor again, and this forget set was mined "
                         f"from {len(anchors)} anchors (a batch, or a set not mined by MAGE): set it false")
    graph_file = MineLayout.beside(forget_set).graph
    if not graph_file.is_file():
        raise LetheError(f"unlearn.stop_reelicit scores the memory graph mined beside the forget set, and there is "
                         f"none at {graph_file}: set it false")
    anchor = next(iter(anchors))
    graph = audited_graph(graph_file, model, anchor, params)
    if not strong_memories(graph, params.audit.strong_strength):
        return None
    return ReelicitCheck(params, anchor, graph, never, tokenizer)
