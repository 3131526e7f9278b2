"""Retain replay on the tiny world: rows the training hurt are scored, and drawn into the retain batch."""

from __future__ import annotations

import random

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from lethe.data import author_qa
from lethe.llm.batching import collate_qa
from lethe.llm.format import PromptFormat
from lethe.unlearn.methods import nll
from lethe.unlearn.retain_replay import RetainReplay, row_nll, weighted_sample


def test_weighted_sample_draws_only_positive_weights_outside_the_exclusion_in_proportion():
    weights = [0.0, 1.0, 0.0, 9.0, 1.0]
    assert sorted(weighted_sample(weights, 5, random.Random(0))) == [1, 3, 4]
    assert weighted_sample(weights, 2, random.Random(0), frozenset({3})) in ([1, 4], [4, 1])
    firsts = [weighted_sample(weights, 1, random.Random(seed))[0] for seed in range(400)]
    assert firsts.count(3) > 0.7 * 400  # weight 9 of 11: drawn first ~82% of the time
    assert weighted_sample([0.0, 0.0], 1, random.Random(0)) == []


def test_the_rows_the_training_hurt_are_drawn_and_untouched_rows_are_not(tiny_world, tiny_backend):
    tokenizer = tiny_backend.tokenizer
    fmt = PromptFormat(tokenizer)
    encoded = [fmt.encode(r.question, r.answer) for author in (0, 1, 2) for r in author_qa(author)[:4]]
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_world["model_path"]),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
    replay = RetainReplay(share=0.5, every=5, seed=0)
    scheduled = [0, 1, 4, 5, 6, 7, 10, 11]
    rows, parts = replay.rows(model, encoded, tokenizer.pad_token_id, torch.device("cpu"), 8, scheduled, 0)
    assert rows == scheduled and parts["retain_rise_max"] < 1e-4  # nothing hurt yet: the schedule stands
    hurt = [8, 9]  # the third author's first two rows, pushed up by a few ascent steps
    # enough to hurt the two rows, not the whole model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=6e-3)
    for _ in range(10):
        optimizer.zero_grad()
        (-nll(model, collate_qa([encoded[i] for i in hurt], tokenizer.pad_token_id))).backward()
        optimizer.step()
    rows, parts = replay.rows(model, encoded, tokenizer.pad_token_id, torch.device("cpu"), 8, scheduled, 3)
    assert rows == scheduled and "retain_rise_max" not in parts  # not a rescoring step: the old weights
    rows, parts = replay.rows(model, encoded, tokenizer.pad_token_id, torch.device("cpu"), 8, scheduled, 5)
    rise = replay.rise
    assert min(rise[i] for i in hurt) > 0.5 and max(rise) in (rise[8], rise[9])
    assert parts["retain_rise_max"] == max(rise)
    drawn = rows[4:]
    assert rows[:4] == scheduled[:4] and parts["replay_rows"] == 4.0 and len(set(rows)) == 8
    assert set(drawn) & set(hurt) and all(rise[i] > 0 for i in drawn)  # by weight; an unhurt row never
    restored = RetainReplay(share=0.5, every=5, seed=0)
    restored.load_state_dict(replay.state_dict())
    assert restored.rows(model, encoded, tokenizer.pad_token_id, torch.device("cpu"), 8, scheduled, 6) == \
        replay.rows(model, encoded, tokenizer.pad_token_id, torch.device("cpu"), 8, scheduled, 6)
    one_by_one = row_nll(model, encoded[:4], tokenizer.pad_token_id, torch.device("cpu"), 1)
    batched = row_nll(model, encoded[:4], tokenizer.pad_token_id, torch.device("cpu"), 4)
    assert batched == pytest.approx(one_by_one, abs=1e-4)  # padding changes nothing
