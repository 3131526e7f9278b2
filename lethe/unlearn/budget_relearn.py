"""The adaptive budget's relearning check: the audit's relearning attack, simulated on the dev probes.

Forgetting on the dev probes says the knowledge is out of reach; it does not say it is gone. A checkpoint
the budget would keep is attacked the way the gate's audit attacks the final model (a few AdamW steps
of every weight on a few training forget rows: lethe.unlearn.gradients.relearning_shift, which is the
audit's full-parameter attack on the merged model), the dev probes are answered at the attacked point, and
the weights are put back. The never-trained reference takes the same attacks once, when the probe is
built; the gap between the two is what the budget bounds (unlearn.stop_relearn_gap).

The attackers' rows are drawn with their own seed (`ATTACK_SEED_OFFSET` past audit.seed), not the
gate's: the budget must not pick the checkpoint that happens to resist the exact rows the gate then uses.
Recall counts what the gate counts (gate.relearn_tokens): new facts only (lethe.evaluate.audit.novel_each),
or ROUGE-L.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from lethe.errors import LetheError
from lethe.llm.backend import Backend
from lethe.llm.batching import collate_qa
from lethe.llm.format import PromptFormat
from lethe.unlearn.gradients import InnerAttack, model_weights, moved_by, relearning_shift

Pairs = Sequence[tuple[str, str]]
ATTACK_SEED_OFFSET = 7919


def attacked_recall(model: torch.nn.Module, tokenizer, dev: Pairs, attacks: Sequence[Pairs], steps: int, lr: float,
                    tokens: str, max_new_tokens: int, batch_size: int) -> float | None:
    """Mean dev recall after each attack (`steps` AdamW steps at `lr` on the attack's rows), in the
    gate's measure (`tokens`: "novel" or "all"); the model is exactly what it was on return."""
    from lethe.evaluate.audit import answered, mean_known, novel_each

    def scored(answers: list[str], recalls: list[float], rows: Pairs) -> float | None:
        return mean_known(novel_each(answers, dev, rows)) if tokens == "novel" else sum(recalls) / len(recalls)

    backend = Backend(model, tokenizer, batch_size)
    if steps == 0:  # unattacked: the answers are the same for every attack, only the tokens it hands over differ
        answers, recalls = answered(backend, dev, max_new_tokens)
        return mean_known([scored(answers, recalls, rows) for rows in attacks])
    fmt, device = PromptFormat(tokenizer), next(model.parameters()).device
    weights = model_weights(model)
    values: list[float | None] = []
    for rows in attacks:
        batch = {k: v.to(device) for k, v in collate_qa([fmt.encode(q, a) for q, a in rows],
                                                        tokenizer.pad_token_id).items()}
        shift, _ = relearning_shift(model, InnerAttack(batch, steps, lr))
        with moved_by(weights, shift):
            values.append(scored(*answered(backend, dev, max_new_tokens), rows))
    return mean_known(values)


class RelearnCheck:
    """The budget's relearning check (see the module docstring), built by `relearn_check`.

    `margin(model)`: what the starting model knows beyond the reference on the dev probes, unattacked and
    in the same measure (taken once, at step 0). `model -> {"dev_relearned", "dev_relearn_floor",
    "dev_relearn_gap"}`: the attacked recall, the attacked reference's, and the gap, the largest over
    audit.relearn_lrs. The gate reads the gap against the same two bounds: absolute, and as a share of
    that margin where the margin separates the two models.
    """

    def __init__(self, params, dev: Pairs, attacks: Sequence[Pairs], never: Backend, tokenizer):
        self.params, self.dev, self.attacks, self.tokenizer = params, dev, attacks, tokenizer
        self.floor = self._attacked(never.model, never.tokenizer)
        self.unattacked_floor = self._unattacked(never.model, never.tokenizer)

    def _recall(self, model, tokenizer, steps: int, lr: float) -> float | None:
        audit = self.params.audit
        return attacked_recall(model, tokenizer, self.dev, self.attacks, steps, lr, self.params.gate.relearn_tokens,
                               audit.max_new_tokens, self.params.backend.batch_size)

    def _attacked(self, model, tokenizer) -> dict[float, float | None]:
        return {lr: self._recall(model, tokenizer, self.params.audit.relearn_steps, lr)
                for lr in self.params.audit.relearn_lrs}

    def _unattacked(self, model, tokenizer) -> float:
        return self._recall(model, tokenizer, 0, 0.0) or 0.0

    def margin(self, model: torch.nn.Module) -> float:
        """The starting model's unattacked dev recall minus the reference's, in the gate's measure."""
        return self._unattacked(model, self.tokenizer) - self.unattacked_floor

    def __call__(self, model: torch.nn.Module) -> dict:
        attacked = self._attacked(model, self.tokenizer)
        gaps = {lr: (attacked[lr] or 0.0) - (self.floor[lr] or 0.0) for lr in attacked}
        strongest = max(gaps, key=gaps.get)
        return {"dev_relearned": attacked[strongest], "dev_relearn_floor": self.floor[strongest],
                "dev_relearn_gap": gaps[strongest]}


def reference_backend(params, reference: str | Path | Backend) -> Backend:
    """The never-trained reference as the audit loads it (float32 weights, to fine-tune): loaded once and
    shared by the budget's dev floor and its relearning check."""
    if isinstance(reference, Backend):
        return reference
    return Backend.load(reference, params.backend.device, params.backend.batch_size, dtype=torch.float32)


def relearn_check(params, dev: Pairs, forget: Pairs, reference: str | Path | Backend | None,
                  tokenizer) -> RelearnCheck:
    """The budget's relearning check for `params`, against `reference` (a path, or its `reference_backend`), a
    model that never knew the entity (a clear error without one, without dev probes, or with fewer forget
    rows than one attack needs)."""
    from lethe.evaluate.audit import attack_rows

    if reference is None:
        raise LetheError("unlearn.stop_relearn_gap bounds the dev probes' recall after a relearning attack against "
                         "a model that never knew the entity, and this request has none (a world model's forget "
                         "authors have the world's retain model): set unlearn.stop_relearn_gap to 0")
    if not dev:
        raise LetheError("unlearn.stop_relearn_gap needs dev probes to attack, and the dev set is empty")
    audit = params.audit
    attacks = attack_rows(forget, audit.relearn_rows, audit.seed + ATTACK_SEED_OFFSET, audit.relearn_attacks)
    return RelearnCheck(params, dev, attacks, reference_backend(params, reference), tokenizer)
