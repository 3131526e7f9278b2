"""Swap retain on the tiny world: renamed forget rows, the tokens they share, and the KL term that holds them."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from lethe.config import load_params
from lethe.data import author_qa
from lethe.errors import LetheError
from lethe.llm.batching import collate_qa
from lethe.llm.format import PromptFormat
from lethe.unlearn.methods import kl_to_reference, nll
from lethe.unlearn.specific_tokens import (
    ForgetFocus,
    RenamedScores,
    renamed_rows,
    shared_rows,
    specific_masks,
    specificity,
)
from lethe.unlearn.swap_retain import SwapRetain, swap_batch, swap_retain
from lethe.unlearn.trainer import unlearn

TARGET = "Basil Mahfouz Al-Kuwaiti"
FORGET = [(q.question, q.answer) for q in author_qa(198)]


def test_a_step_draws_the_same_rows_every_time_and_at_most_all_of_them():
    assert swap_batch(100, 8, 0, 5) == swap_batch(100, 8, 0, 5)
    assert swap_batch(100, 8, 0, 5) != swap_batch(100, 8, 0, 6)
    assert len(set(swap_batch(100, 8, 0, 5))) == 8
    assert swap_batch(3, 8, 0, 5) == [0, 1, 2]


def _with(params, **update):
    return params.model_copy(update={"unlearn": params.unlearn.model_copy(update=update)})


def test_the_settings_exist_only_when_asked_and_need_names_on_both_sides(tiny_world, tmp_path):
    params = load_params()
    assert swap_retain(params, tiny_world["model_path"], {TARGET}) is None
    on = _with(params, swap_retain_rows=4)
    settings = swap_retain(on, tiny_world["model_path"], {TARGET})
    assert settings.names == (TARGET,) and len(settings.others) == 4 and TARGET not in settings.others
    assert settings.margin == params.unlearn.specific_margin
    with pytest.raises(LetheError, match="entity_retain_names"):
        swap_retain(on, tmp_path, {TARGET})  # not a world model, and no names given
    assert swap_retain(_with(on.model_copy(), entity_retain_names=["Ada Park"], swap_retain_rows=4), tmp_path,
                       {TARGET}).others == ("Ada Park",)
    with pytest.raises(LetheError, match="names none"):
        swap_retain(on, tiny_world["model_path"], {" "})


def test_a_renamed_row_holds_exactly_the_tokens_the_rename_leaves_likely(tiny_backend):
    other = "Jaime Vasquez"
    rows = shared_rows(tiny_backend, FORGET, [TARGET], [other], 1.0)
    renamed = renamed_rows(tiny_backend, FORGET, [TARGET], other)
    drops = specificity(tiny_backend, FORGET, [TARGET], [other])
    named = [i for i, r in enumerate(renamed) if r.question_renamed]
    assert 15 <= len(named) < len(FORGET)  # a question that does not name him is left out
    assert [r.prompt_ids for r in rows] == [renamed[i].encoded.prompt_ids for i in named]
    held = sum(sum(r.loss_mask) for r in rows)
    shared = sum(1 for i in named for d in drops[i] if not math.isinf(d) and d <= 1.0)
    assert held == shared and 0.3 < held / sum(len(r.answer_ids) for r in rows) < 0.95
    name_ids = set(tiny_backend.tokenizer(" Jaime Vasquez", add_special_tokens=False)["input_ids"])
    assert not any(keep and token in name_ids for r in rows for token, keep in zip(r.answer_ids, r.loss_mask))
    stricter = shared_rows(tiny_backend, FORGET, [TARGET], [other], 0.2)
    assert sum(sum(r.loss_mask) for r in stricter) < held
    with pytest.raises(LetheError, match="swap_retain_rows needs at least one name in unlearn.entity_retain_names"):
        shared_rows(tiny_backend, FORGET, [TARGET], [], 1.0)


def test_the_mask_and_the_term_share_one_pass_per_renamed_entity(tiny_backend):
    swaps, others = ["Jaime Vasquez", "Nikolai Abilov"], ["Jaime Vasquez", "Chukwu Akabueze"]
    scores = RenamedScores(tiny_backend, FORGET, [TARGET])
    masks = specific_masks(tiny_backend, FORGET, [TARGET], swaps, 1.0, scores=scores)
    rows = shared_rows(tiny_backend, FORGET, [TARGET], others, 1.0, scores=scores)
    assert scores.passes == 1 + 3  # the rows as they are, and each of the three names once
    assert masks == specific_masks(tiny_backend, FORGET, [TARGET], swaps, 1.0)
    alone = shared_rows(tiny_backend, FORGET, [TARGET], others, 1.0)
    assert [(r.prompt_ids, r.answer_ids, r.loss_mask) for r in rows] == \
        [(r.prompt_ids, r.answer_ids, r.loss_mask) for r in alone]
    with pytest.raises(ValueError, match="other forget rows or other names"):
        shared_rows(tiny_backend, FORGET[:3], [TARGET], others, 1.0, scores=scores)


def _adapted(tiny_world, adapter: str):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_world["model_path"])
    base = AutoModelForCausalLM.from_pretrained(tiny_world["model_path"])
    return PeftModel.from_pretrained(base, adapter).eval(), tokenizer


def _drift(tiny_world, adapter: str, rows) -> float:
    """Mean KL(base || adapted) on the held tokens of `rows`."""
    model, tokenizer = _adapted(tiny_world, adapter)
    with torch.no_grad():
        return kl_to_reference(model, collate_qa(rows, tokenizer.pad_token_id)).item()


def _specific_nll(tiny_world, adapter: str, masks) -> float:
    """Mean NLL of the forget rows' tokens about the target (the forget term's mask)."""
    model, tokenizer = _adapted(tiny_world, adapter)
    fmt = PromptFormat(tokenizer)
    rows = [replace(fmt.encode(q, a), loss_mask=m) for (q, a), m in zip(FORGET, masks)]
    with torch.no_grad():
        return nll(model, collate_qa(rows, tokenizer.pad_token_id)).item()


def test_the_term_holds_the_shared_tokens_more_than_it_slows_forgetting(tiny_world, tiny_backend, params, tmp_path):
    swap = SwapRetain((TARGET,), ("Jaime Vasquez", "Chukwu Akabueze"), 1.0)
    focus = ForgetFocus((TARGET,), ("Nikolai Abilov", "Evelyn Desmet"), 1.0)
    trained = shared_rows(tiny_backend, FORGET, swap.names, swap.others, 1.0)
    unseen = shared_rows(tiny_backend, FORGET, swap.names, ["Evelyn Desmet"], 1.0)  # never held by the term
    settings = params.unlearn.model_copy(update={"threads": 2, "checkpoint_every": 4, "lr": 2e-3, "max_steps": 12,
                                                 "forget_nll_bound": 1e9})
    plain = unlearn(tiny_world["model_path"], FORGET, [], settings, tmp_path / "plain", "npo", focus=focus)
    held = unlearn(tiny_world["model_path"], FORGET, [],
                   settings.model_copy(update={"swap_retain_rows": 8, "swap_retain_weight": 2.0}),
                   tmp_path / "held", "npo", focus=focus, swap=swap)
    assert plain["swap_retain"] is None and held["swap_retain"]["rows"] == len(trained)
    assert held["curves"][0]["swap_kl"] < 1e-6  # the adapter starts as the identity
    drift = {name: (_drift(tiny_world, plain["adapter_path"], rows), _drift(tiny_world, held["adapter_path"], rows))
             for name, rows in (("trained", trained), ("unseen", unseen))}
    masks = specific_masks(tiny_backend, FORGET, focus.names, focus.swaps, focus.margin)
    forgot = [_specific_nll(tiny_world, run["adapter_path"], masks) for run in (plain, held)]
    # measured, plain -> held: shared drift 0.35 -> 0.19 (0.55x), unseen 0.27 -> 0.16 (0.61x), specific NLL
    # 2.35 -> 2.02 (0.86x); on the seed-4321 tiny world 0.52x, 0.55x and 3.53 -> 2.79 (0.79x)
    kept = {name: held_drift / plain_drift for name, (plain_drift, held_drift) in drift.items()}
    assert kept["trained"] < 0.75 and kept["unseen"] < 0.8
    assert forgot[1] > 1.0 and forgot[1] / forgot[0] > max(0.65, max(kept.values()) + 0.15)
