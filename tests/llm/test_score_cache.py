"""The score cache: stored scores are the model's own, found again by content, never served for a
model that changed."""

from __future__ import annotations

import shutil

import pytest
import torch

from lethe.llm.backend import Backend
from lethe.llm.score_cache import GREEDY, LOGPROBS, CachingBackend, ScoreStore, caching
from tests.architectures import build_tiny_model

QUESTIONS = ["Where was Ada born?", "What did Ada write?", "Where was Ada born?", "Who taught Ada?"]
PAIRS = [("Where was Ada born?", "Ada was born in Paris."), ("What did Ada write?", "Ada wrote poems."),
         ("Where was Ada born?", "Ada was born in Paris.")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return build_tiny_model("llama", tmp_path_factory.mktemp("m") / "model", chat=False, seed=3)


def _flat(rows: list[list[float]]) -> list[float]:
    return [value for row in rows for value in row]


def _rows(store: ScoreStore, kind: str) -> int:
    import sqlite3

    with sqlite3.connect(store.path) as db:
        return db.execute("SELECT COUNT(*) FROM scores WHERE kind = ?", [kind]).fetchone()[0]


def test_scores_are_the_models_own_and_come_back_from_disk(model_dir, tmp_path):
    plain = Backend.load(model_dir, "cpu", 8)
    expected_answers, expected_logprobs = plain.greedy(QUESTIONS, 6), plain.answer_logprobs(PAIRS)

    first = caching(Backend.load(model_dir, "cpu", 8), tmp_path, model_dir)
    assert isinstance(first, CachingBackend)
    assert first.greedy(QUESTIONS, 6) == expected_answers
    assert _flat(first.answer_logprobs(PAIRS)) == pytest.approx(_flat(expected_logprobs), abs=1e-5)
    assert (first.hits, first.misses) == (2, 5)  # a row asked twice in one call is scored once
    assert (_rows(first.store, GREEDY), _rows(first.store, LOGPROBS)) == (3, 2)

    again = caching(Backend.load(model_dir, "cpu", 8), tmp_path, model_dir)
    again.model.generate = None  # a stored row never reaches the model
    assert again.greedy(QUESTIONS, 6) == expected_answers
    assert again.answer_logprobs(PAIRS) == first.answer_logprobs(PAIRS)
    assert again.misses == 0 and again.hits == len(QUESTIONS) + len(PAIRS)


def test_a_longer_answer_budget_is_another_row(model_dir, tmp_path):
    backend = caching(Backend.load(model_dir, "cpu", 8), tmp_path, model_dir)
    short = backend.greedy(QUESTIONS[:1], 2)
    longer = backend.greedy(QUESTIONS[:1], 8)
    assert backend.misses == 2 and len(longer[0]) >= len(short[0])


def test_another_model_has_its_own_store(model_dir, tmp_path):
    other_dir = build_tiny_model("llama", tmp_path / "other", chat=False, seed=4)
    mine = caching(Backend.load(model_dir, "cpu", 8), tmp_path / "cache", model_dir)
    mine.answer_logprobs(PAIRS)
    other = caching(Backend.load(other_dir, "cpu", 8), tmp_path / "cache", other_dir)
    assert other.store.path != mine.store.path
    assert other.answer_logprobs(PAIRS) != mine.answer_logprobs(PAIRS)
    assert other.misses == 2  # every distinct row scored: nothing came from the first model's store


def test_a_copy_of_the_same_weights_shares_the_store(model_dir, tmp_path):
    copy = shutil.copytree(model_dir, tmp_path / "copy")
    first = caching(Backend.load(model_dir, "cpu", 8), tmp_path / "cache", model_dir)
    second = caching(Backend.load(copy, "cpu", 8), tmp_path / "cache", copy)
    assert first.store.path == second.store.path


def test_a_disabled_cache_scores_the_changed_model_and_stores_nothing(model_dir, tmp_path):
    backend = caching(Backend.load(model_dir, "cpu", 8), tmp_path, model_dir)
    stored = backend.answer_logprobs(PAIRS)
    counted = (backend.hits, backend.misses)
    backend.disable()
    with torch.no_grad():
        for weight in backend.model.parameters():
            weight.add_(0.05 * torch.randn_like(weight))
    changed = backend.answer_logprobs(PAIRS)
    assert changed != stored
    assert _flat(changed) == pytest.approx(_flat(Backend(backend.model, backend.tokenizer, 8).answer_logprobs(PAIRS)),
                                          abs=1e-5)
    assert _rows(backend.store, LOGPROBS) == 2 and (backend.hits, backend.misses) == counted


def test_no_cache_dir_is_the_plain_backend(model_dir):
    plain = Backend.load(model_dir, "cpu", 8)
    assert caching(plain, None, model_dir) is plain


def test_with_adapter_disables_the_cache_of_the_model_it_changes(model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from lethe.evaluate.runner import with_adapter

    adapter_model = get_peft_model(Backend.load(model_dir, "cpu", 8).model,
                                   LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    adapter_model.save_pretrained(tmp_path / "adapter")
    backend = caching(Backend.load(model_dir, "cpu", 8), tmp_path / "cache", model_dir)
    before = backend.answer_logprobs(PAIRS)
    after = with_adapter(backend, tmp_path / "adapter").answer_logprobs(PAIRS)
    assert after != before
    # the merged model's own scores, not the stored rows of the model before the merge
    assert _flat(backend.answer_logprobs(PAIRS)) == pytest.approx(_flat(after), abs=1e-5)
