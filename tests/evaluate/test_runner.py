"""The suite's model with an adapter: merged where that is exact, on top where merging would round."""

import copy

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model

from lethe.evaluate.runner import with_adapter
from lethe.llm.backend import Backend
from tests.architectures import build_tiny_model


@pytest.fixture(scope="module")
def model_and_adapter(tmp_path_factory):
    root = tmp_path_factory.mktemp("with_adapter")
    model = build_tiny_model("llama", root / "model", chat=False)
    base = Backend.load(model, "cpu", 4).model
    torch.manual_seed(1)
    lora = get_peft_model(copy.deepcopy(base), LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "down_proj"],
                                                          init_lora_weights=False, task_type="CAUSAL_LM"))
    lora.save_pretrained(root / "adapter")
    return model, root / "adapter"


def _logits(backend: Backend) -> torch.Tensor:
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        return backend.model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.float()


def test_a_float32_model_gets_the_adapter_merged_with_the_same_outputs(model_and_adapter):
    model, adapter = model_and_adapter
    base = Backend.load(model, "cpu", 4)
    on_top = Backend(PeftModel.from_pretrained(Backend.load(model, "cpu", 4).model, adapter).eval(), base.tokenizer)
    merged = with_adapter(base, adapter)
    assert not isinstance(merged.model, PeftModel)
    assert not any("lora_" in name for name, _ in merged.model.named_parameters())
    assert torch.allclose(_logits(merged), _logits(on_top), atol=1e-5)
    assert not torch.allclose(_logits(merged), _logits(Backend.load(model, "cpu", 4)), atol=1e-3)  # it changed


def test_a_half_precision_model_keeps_the_adapter_on_top(model_and_adapter):
    model, adapter = model_and_adapter
    kept = with_adapter(Backend.load(model, "cpu", 4, dtype=torch.bfloat16), adapter)
    assert isinstance(kept.model, PeftModel)


def test_the_held_out_probes_carry_the_graph_node_they_ask_about(tmp_path):
    import json

    from lethe.evaluate.runner import probe_nodes

    audit_set = tmp_path / "audit_set.jsonl"
    rows = [{"question": "q1", "answer": "a", "node": "Prix Goncourt"}, {"question": "q2", "answer": "b"},
            {"question": "q3", "answer": "c", "node": "Prix Goncourt"}]
    audit_set.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert probe_nodes(audit_set, 3) == ["Prix Goncourt", "#1", "Prix Goncourt"]  # a row without one: its own
    assert probe_nodes(audit_set, 4) == ["#0", "#1", "#2", "#3"]  # not the probes' file: each probe alone


def test_a_second_suite_on_the_same_starting_model_is_answered_from_the_score_cache(tiny_world, params, tmp_path):
    from pathlib import Path

    from lethe.evaluate import metrics as M
    from lethe.evaluate.runner import suite_models

    def before(cache: bool) -> dict:
        cfg = params.model_copy(update={"registry": params.registry.model_copy(update={"workdir": str(tmp_path)}),
                                        "backend": params.backend.model_copy(update={"score_cache": cache})})
        return suite_models(cfg, Path(tiny_world["model_path"]), Path("no-adapter"), ["Basil Mahfouz Al-Kuwaiti"],
                            None, ["before"])["before"]["metrics"]

    first, second, uncached = before(True), before(True), before(False)
    assert first[M.SCORE_CACHE_MISSES] > 0 and second[M.SCORE_CACHE_MISSES] == 0
    assert second[M.SCORE_CACHE_HITS] == first[M.SCORE_CACHE_HITS] + first[M.SCORE_CACHE_MISSES]
    assert M.SCORE_CACHE_HITS not in uncached and list((tmp_path / "_scores").glob("*.sqlite"))
    measured = [k for k in first if isinstance(first[k], float) and k != "eval_seconds"]
    assert {k: second[k] for k in measured} == {k: first[k] for k in measured}
    assert {k: uncached[k] for k in measured} == pytest.approx({k: first[k] for k in measured}, abs=1e-6)
    others = {a["name"] for a in tiny_world["authors"]} - {"Basil Mahfouz Al-Kuwaiti"}
    assert first[M.ENTITY_RECOGNITION].keys() == others and second[M.ENTITY_RECOGNITION] == first[M.ENTITY_RECOGNITION]


def test_each_held_out_probe_shows_every_models_answers_before_and_after_the_attack(tmp_path):
    import json

    from lethe.evaluate.runner import heldout_probe_rows

    audit_set = tmp_path / "audit_set.jsonl"
    pairs = [("Which prize did Basil win?", "The Prix Goncourt."), ("Where was Basil born?", "Kuwait City.")]
    audit_set.write_text("\n".join(json.dumps({"question": q, "answer": a, "node": n})
                                   for (q, a), n in zip(pairs, ["Prix Goncourt", "Kuwait City"])) + "\n")

    def model(plain, attacked_by_rate, means):
        return {"_heldout_answers": plain,
                "relearn_heldout_by_lr": {lr: {"mean": means[lr], "per_probe": [means[lr]] * 2,
                                               "novel_per_probe": [means[lr] / 2, None]} for lr in means},
                "_relearn_answers": {"heldout": attacked_by_rate}}

    audit = {"before": {"_heldout_answers": ["Prix Goncourt", "Kuwait"]},
             "after": model(["I do not know", "?"], {"0.001": ["x", "y"], "0.0003": ["Goncourt", "Kuwait"]},
                            {"0.001": 0.1, "0.0003": 0.4}),
             "reference": model(["no", "no"], {"0.001": ["a", "b"], "0.0003": ["c", "d"]},
                                {"0.001": 0.2, "0.0003": 0.1})}
    rows = heldout_probe_rows(audit, audit_set)
    assert [r["node"] for r in rows] == ["Prix Goncourt", "Kuwait City"] and rows[0]["before"] == "Prix Goncourt"
    # the rate that raised the unlearned model most (3e-4), for both models
    assert rows[0]["after_attacked"] == "Goncourt" and rows[0]["reference_attacked"] == "c"
    assert (rows[0]["after_attacked_rouge"], rows[0]["reference_attacked_novel"]) == (0.4, 0.05)
    assert rows[1]["after_attacked_novel"] is None
    assert heldout_probe_rows({"after": {}}, audit_set) == []  # an audit that kept no answers
