"""Unlearning on the tiny world: it forgets the target, spares others, resumes exactly, refuses bad input."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lethe.data import author_qa
from lethe.errors import LetheError
from lethe.evaluate.runner import with_adapter
from lethe.llm.backend import Backend
from lethe.unlearn.run import run_unlearning
from lethe.unlearn.trainer import unlearn
from lethe.world.probe import recall_on

FORGET = [(q.question, q.answer) for q in author_qa(198)]
RETAIN = [(q.question, q.answer) for i in (0, 1) for q in author_qa(i)]


def cfg(params, **update):
    return params.unlearn.model_copy(update={"threads": 2, "checkpoint_every": 4, **update})


def mean_recall(backend, author):
    scores = recall_on(backend, author_qa(author), 96)
    return sum(scores) / len(scores)


@pytest.fixture(scope="module")
def ga_run(tiny_world, params, tmp_path_factory):
    out = tmp_path_factory.mktemp("ga")
    return unlearn(tiny_world["model_path"], FORGET, [], cfg(params, lr=2e-3, max_steps=12, forget_nll_bound=1e9),
                   out, "ga")


def test_ga_forgets_the_target_and_spares_another_author(ga_run, tiny_world):
    backend = Backend.load(tiny_world["model_path"], "cpu")
    before = mean_recall(backend, 198)
    after = with_adapter(backend, Path(ga_run["adapter_path"]))  # wraps the base model in place
    assert before > 0.9
    assert mean_recall(after, 198) < 0.5
    assert mean_recall(after, 2) > 0.6  # an author never used in training stays answered
    assert ga_run["steps"] == 12 and len(ga_run["curves"]) == 12


def test_interrupted_run_resumes_to_the_same_adapter(tiny_world, params, tmp_path):
    settings = cfg(params, lr=1e-3, max_steps=8, forget_nll_bound=1e9)
    whole = unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "whole", "npo_gd")

    def crash(step, total, record):
        if step == 6:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "crashed", "npo_gd", on_step=crash)
    assert (tmp_path / "crashed" / "checkpoints" / "step-4").is_dir()
    resumed = unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "crashed", "npo_gd")
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 8
    a = load_file(f"{whole['adapter_path']}/adapter_model.safetensors")
    b = load_file(f"{resumed['adapter_path']}/adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_early_stop_on_forget_loss(tiny_world, params, tmp_path):
    run = unlearn(tiny_world["model_path"], FORGET, [], cfg(params, lr=5e-3, max_steps=50, forget_nll_bound=3.0),
                  tmp_path, "ga")
    assert run["stopped_by"] == "forget_nll_bound" and run["steps"] < 50


def test_empty_forget_set_is_refused(tiny_world, params, tmp_path):
    with pytest.raises(LetheError, match="forget set is empty"):
        unlearn(tiny_world["model_path"], [], RETAIN, cfg(params), tmp_path, "ga")


def test_missing_lora_target_is_refused_before_training(tiny_world, params, tmp_path):
    bad = cfg(params).model_copy(update={"lora": params.unlearn.lora.model_copy(update={"target_modules": ["c_attn"]})})
    with pytest.raises(LetheError, match=r"\['c_attn'\] do not exist"):
        unlearn(tiny_world["model_path"], FORGET, RETAIN, bad, tmp_path / "out", "ga")
    assert not (tmp_path / "out").exists()


def test_forget_set_that_failed_validation_is_refused(tiny_world, params, tmp_path):
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "validation.json").write_text(json.dumps(
        {"success": False, "sets": {"forget_set": {"failed": [{"expectation": "expect_table_row_count_to_be_between",
                                                               "observed": 2}]}}}))
    forget = tmp_path / "forget_set.jsonl"
    forget.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in FORGET))
    with pytest.raises(LetheError, match="failed validation"):
        run_unlearning(params, tiny_world["model_path"], forget, None, "ga", tmp_path / "out", False)
    assert not (tmp_path / "out").exists()
