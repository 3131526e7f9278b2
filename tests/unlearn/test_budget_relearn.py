"""The adaptive budget's relearning check, on the tiny world's models."""

import pytest
import torch

from lethe.data import author_qa
from lethe.errors import LetheError
from lethe.llm.backend import Backend
from lethe.unlearn.budget_relearn import attacked_recall, relearn_check


def _pairs(author: int, rows: slice) -> list[tuple[str, str]]:
    return [(qa.question, qa.answer) for qa in author_qa(author)[rows]]


def test_the_attack_moves_recall_and_leaves_the_weights_exactly_as_they_were(tiny_world, params):
    backend = Backend.load(tiny_world["retain_model_path"], "cpu", params.backend.batch_size, dtype=torch.float32)
    before = {name: p.detach().clone() for name, p in backend.model.named_parameters()}
    forget, dev = _pairs(198, slice(0, 8)), _pairs(198, slice(8, 14))
    tokens = params.audit.max_new_tokens
    untouched = attacked_recall(backend.model, backend.tokenizer, dev, [forget], 0, 3e-4, "all", tokens, 8)
    attacked = attacked_recall(backend.model, backend.tokenizer, dev, [forget], 20, 3e-3, "all", tokens, 8)
    assert attacked != untouched  # the attack really trained
    assert all(torch.equal(p, before[name]) for name, p in backend.model.named_parameters())
    again = attacked_recall(backend.model, backend.tokenizer, dev, [forget], 20, 3e-3, "all", tokens, 8)
    assert again == attacked  # and the same attack on the same weights gives the same answers


def test_the_gap_is_zero_for_the_reference_itself_and_positive_for_a_model_that_knew(tiny_world, params):
    forget, dev = _pairs(198, slice(0, 10)), _pairs(198, slice(10, 20))
    reference = tiny_world["retain_model_path"]
    never = Backend.load(reference, "cpu", params.backend.batch_size, dtype=torch.float32)
    # one attack at one rate: with several, the floor reported is that of the rate with the largest gap
    one_attack = params.model_copy(update={"audit": params.audit.model_copy(update={"relearn_attacks": 1,
                                                                                    "relearn_lr": 0.0003})})
    probe = relearn_check(one_attack, dev, forget, reference, never.tokenizer)
    same = probe(never.model)
    assert same["dev_relearn_gap"] == pytest.approx(0.0, abs=1e-9) and probe.margin(never.model) == 0.0
    knew = Backend.load(tiny_world["model_path"], "cpu", params.backend.batch_size, dtype=torch.float32)
    point = probe(knew.model)
    assert point["dev_relearn_floor"] == same["dev_relearn_floor"]
    assert point["dev_relearn_gap"] > 0.1  # the world model still holds the author's dev facts
    assert probe.margin(knew.model) > 0.1


def test_without_a_reference_or_dev_probes_the_check_is_refused(tiny_world, params):
    forget, dev = _pairs(198, slice(0, 10)), _pairs(198, slice(10, 20))
    with pytest.raises(LetheError, match="set unlearn.stop_relearn_gap to 0"):
        relearn_check(params, dev, forget, None, None)
    with pytest.raises(LetheError, match="dev set is empty"):
        relearn_check(params, [], forget, tiny_world["retain_model_path"], None)
    with pytest.raises(LetheError, match="cannot be larger than the forget set"):
        relearn_check(params, dev, forget[:3], tiny_world["retain_model_path"], None)
