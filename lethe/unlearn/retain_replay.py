"""Retain replay: part of each step's retain batch goes to the retain rows the training has hurt most.

With hundreds of retain rows and a few dozen a step, a row is seen a handful of times in a run, while
the forget term's damage concentrates: a few rows of a few other entities turn to word salad and drag
their entity's retention below the gate (stop 40). Every `every` steps the mean answer NLL of every
retain row is scored on the current model; its rise over the base model (the adapter disabled) is the
row's weight, and `share` of each retain batch is drawn by weight (without replacement, seeded by the
step) in place of the last scheduled rows. Rows that did not get worse are never drawn by replay.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lethe.llm.batching import collate_qa
from lethe.llm.format import EncodedQA
from lethe.unlearn.methods import reference, sequence_logprob


def row_nll(model, encoded: Sequence[EncodedQA], pad_id: int, device: torch.device, batch_size: int) -> list[float]:
    """Mean answer-token NLL of each row under `model` as it is (no gradients, eval mode)."""
    was_training = model.training
    model.eval()
    values: list[float] = []
    try:
        with torch.no_grad():
            for start in range(0, len(encoded), batch_size):
                batch = {k: v.to(device) for k, v in collate_qa(list(encoded[start:start + batch_size]),
                                                                pad_id).items()}
                values.extend((-sequence_logprob(model, batch, mean=True)).tolist())
    finally:
        model.train(was_training)
    return values


def weighted_sample(weights: Sequence[float], count: int, rng: random.Random,
                    exclude: frozenset[int] = frozenset()) -> list[int]:
    """`count` distinct indices with weight > 0 (not in `exclude`), drawn in proportion to their weights
    (Efraimidis-Spirakis keys u^(1/w)); fewer when fewer qualify."""
    keyed = [(rng.random() ** (1.0 / w), i) for i, w in enumerate(weights) if w > 0 and i not in exclude]
    return [i for _, i in sorted(keyed, reverse=True)[:count]]


@dataclass
class RetainReplay:
    """Scores the retain rows' NLL rise every `every` steps and mixes the most hurt into each retain batch."""

    share: float
    every: int
    seed: int
    base_nll: list[float] | None = None
    rise: list[float] | None = None
    scored_at: int = -1

    def rows(self, model, encoded: Sequence[EncodedQA], pad_id: int, device: torch.device, batch_size: int,
             scheduled: list[int], step: int) -> tuple[list[int], dict[str, float]]:
        """The retain indices of `step`: the scheduled ones with the last `share` of them replaced by
        replay draws; and what the rescoring measured when it ran at this step."""
        parts: dict[str, float] = {}
        if self.base_nll is None:
            with reference(model):
                self.base_nll = row_nll(model, encoded, pad_id, device, batch_size)
        if self.rise is None or (step % self.every == 0 and step != self.scored_at):
            current = row_nll(model, encoded, pad_id, device, batch_size)
            self.rise = [max(0.0, c - b) for c, b in zip(current, self.base_nll)]
            self.scored_at = step
            parts = {"retain_rise_mean": sum(self.rise) / len(self.rise), "retain_rise_max": max(self.rise),
                     "retain_rows_hurt": float(sum(r > 0.5 for r in self.rise))}
        count = round(self.share * len(scheduled))
        if count == 0:
            return scheduled, parts
        kept = scheduled[:len(scheduled) - count]
        drawn = weighted_sample(self.rise, count, random.Random(self.seed * 7919 + step), frozenset(kept))
        topped_up = [i for i in scheduled[len(kept):] if i not in drawn][:count - len(drawn)]
        return kept + drawn + topped_up, {**parts, "replay_rows": float(len(drawn))}

    def state_dict(self) -> dict:
        """What a checkpoint keeps, so a resumed run draws what the whole run would have."""
        return {"base_nll": self.base_nll, "rise": self.rise, "scored_at": self.scored_at}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict`'s values."""
        self.base_nll, self.rise, self.scored_at = state["base_nll"], state["rise"], state["scored_at"]
