import math

import pytest
import torch

from lethe.data import author_qa
from lethe.errors import ModelNotFoundError
from lethe.llm.backend import Backend


def test_missing_model_path_is_clear(tmp_path):
    with pytest.raises(ModelNotFoundError, match="no model at"):
        Backend.load(tmp_path / "missing")


def test_sampling_is_deterministic_under_a_seed(tiny_backend):
    questions = [qa.question for qa in author_qa(198)[:3]] + ["Tell me about Nikolai Abilov."]
    first = tiny_backend.sample(questions, n=4, seed=7, max_new_tokens=32)
    second = tiny_backend.sample(questions, n=4, seed=7, max_new_tokens=32)
    other = tiny_backend.sample(questions, n=4, seed=8, max_new_tokens=32)
    assert first == second
    assert len(first) == 4 and all(len(s) == 4 for s in first)
    assert first != other


def test_batched_greedy_matches_one_at_a_time(tiny_backend):
    questions = [qa.question for qa in author_qa(199)[:5]]
    batched = tiny_backend.greedy(questions, max_new_tokens=40)
    single = [tiny_backend.greedy([q], max_new_tokens=40)[0] for q in questions]
    assert batched == single


def test_answer_logprobs_match_manual_computation(tiny_backend):
    pairs = [(qa.question, qa.answer) for qa in author_qa(0)[:3]] + [("Who?", "Nobody at all.")]
    batched = tiny_backend.answer_logprobs(pairs)
    for (question, answer), got in zip(pairs, batched):
        enc = tiny_backend.format.encode(question, answer)
        ids = torch.tensor([enc.prompt_ids + enc.answer_ids])
        with torch.no_grad():
            logp = torch.log_softmax(tiny_backend.model(input_ids=ids).logits[0].float(), dim=-1)
        start = len(enc.prompt_ids)
        manual = [logp[start + i - 1, tok].item() for i, tok in enumerate(enc.answer_ids)]
        assert len(got) == len(manual)
        assert all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(got, manual))


def test_length_sorted_batches_answer_in_the_given_order(tiny_backend):
    """Batches of 2 over questions of mixed lengths: sorting moves rows across batches, and every
    answer still lands at its question's position."""
    small = Backend(tiny_backend.model, tiny_backend.tokenizer, batch_size=2)
    questions = ["Who?", *[qa.question for qa in author_qa(198)[:3]], "Name one book.", author_qa(0)[1].question,
                 "Where?"]
    assert small.greedy(questions, max_new_tokens=24) == [small.greedy([q], max_new_tokens=24)[0] for q in questions]
    pairs = [(q, "An answer of some length, " * (i % 3 + 1)) for i, q in enumerate(questions)]
    batched = small.answer_logprobs(pairs)
    for pair, got in zip(pairs, batched):
        alone = small.answer_logprobs([pair])[0]
        assert len(got) == len(alone) and all(math.isclose(a, b, abs_tol=1e-4) for a, b in zip(got, alone))


def test_memorized_answer_is_likely(tiny_backend):
    qa = author_qa(198)[2]
    known = tiny_backend.answer_logprobs([(qa.question, qa.answer)])[0]
    wrong = tiny_backend.answer_logprobs([(qa.question, author_qa(0)[2].answer)])[0]
    assert sum(known) / len(known) > sum(wrong) / len(wrong)
