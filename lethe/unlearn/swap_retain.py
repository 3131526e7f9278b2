"""Swap retain: the forget rows renamed after the other entities, their shared words held where they were.

The forget term pushes a row's tokens down in the target's context, and some of those tokens are not
the target's alone. Nikolai Abilov's mined rows carry "LGBTQ+" and "their"; Raven Marais's answers
need the same words, and after his requests 10 of her 20 answers broke on them (stop 41), although
she had self-retain rows and the forget term's token mask was on. The mask judges shared words by a
few swapped-in names; this term protects every other entity the model knows.

Renamed after another entity (question and answer, `specific_tokens.renamer`), a forget row says what
the starting model continues for *that* entity. The answer tokens the rename leaves about as likely
(`specific_tokens.shared_rows`: a drop of at most `unlearn.specific_margin`) are language the two share;
a KL term to the starting model (the adapter disabled) on those tokens of a few rows a step holds
them, so the forget term can lower only what is tied to the target's name. The target's own facts
are not held: they drop under the rename, and a row whose question does not name the target is left
out (its answer would follow the target's own question). On the tiny world a KL on whole renamed
rows stopped gradient ascent from forgetting at all. It needs no corpus and no gold answer: the
forget rows and the names of the others.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path

from lethe.config import Params
from lethe.errors import LetheError


@dataclass(frozen=True)
class SwapRetain:
    """Whom swap retain renames (`names`, the request's targets) after whom (`others`), and the margin
    (nats) under which a renamed token counts as shared."""

    names: tuple[str, ...]
    others: tuple[str, ...]
    margin: float


def swap_batch(n_rows: int, size: int, seed: int, step: int) -> list[int]:
    """The renamed rows of `step`: `size` of them (all when fewer), drawn from the seed and the step, so a
    resumed run draws the same ones."""
    return sorted(random.Random(seed * 1_000_033 + step).sample(range(n_rows), min(size, n_rows)))


def swap_retain(params: Params, model: str | Path, targets: AbstractSet[str],
                forget_questions: Sequence[str] = ()) -> SwapRetain | None:
    """The request's swap retain settings when `unlearn.swap_retain_rows` is on, else None: its targets,
    renamed after the entities `lethe.evaluate.suite.other_entities` keeps (`unlearn.entity_retain_names`, else a
    world model's other authors). A clear error when the request names no one or there is no one to
    rename after."""
    from lethe.evaluate.suite import other_entities

    cfg = params.unlearn
    if cfg.swap_retain_rows == 0:
        return None
    names = tuple(sorted(n for n in targets if n.strip()))
    if not names:
        raise LetheError("unlearn.swap_retain_rows renames the entity being forgotten, and this request names none")
    others = other_entities(model, cfg.entity_retain_names, targets, forget_questions)
    if not others:
        raise LetheError(f"unlearn.swap_retain_rows renames the forget rows after other entities the model at {model} "
                         "knows, and it names none (not a world model): list them in unlearn.entity_retain_names, "
                         "or set unlearn.swap_retain_rows to 0")
    return SwapRetain(names, tuple(others), cfg.specific_margin)
