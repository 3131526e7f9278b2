"""One request path over every architecture family: nothing in Lethe may assume a Llama.

Tiny randomly initialised Llama, Qwen2, Mistral, Phi-3 (fused qkv_proj / gate_up_proj), GPT-2
(Conv1D) and Gemma models, each with a ChatML chat template and without one (plain completion
prompts), run the path a request takes: preflight, mine (elicit, score, expand, sample), validate
(the GX checkpoint), unlearn with every registered method, SAGE, evaluate, compose, register in
a real MLflow server (S3 artifacts on SeaweedFS), load the registered pyfunc back and answer.
Efficacy is meaningless on random weights: the assertions are about shapes, layers and files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from lethe.config import load_params
from lethe.data import author_qa
from lethe.evaluate import metrics as M
from lethe.unlearn.methods import REGISTRY
from tests.architectures import ARCHITECTURES, EXPECTED_TARGETS, build_tiny_model, tiny_tokenizer

pytestmark = pytest.mark.slow  # real servers

ANCHOR_INDEX, NEIGHBOR_INDICES = 198, (0, 1)


@pytest.fixture(scope="module")
def matrix_params(tmp_path_factory):
    """params.yaml shrunk to seconds per step: short elicitation, 2 training steps, few eval rows."""
    raw = yaml.safe_load(Path("params.yaml").read_text())
    raw["backend"].update(device="cpu", max_new_tokens=8)
    raw["elicit"].update(samples=2, prompts=raw["elicit"]["prompts"][:2], max_new_tokens=12)
    raw["expand"].update(hops=1, samples=2, max_model_calls=20)
    raw["unlearn"].update(max_steps=2, batch_size=2, eval_every=0, checkpoint_every=1, general_retain_rows=2,
                          threads=2)
    raw["sage"].update(retain_proxy_rows=4)
    raw["audit"].update(reelicit_samples=2, relearn_rows=2, relearn_steps=2, max_new_tokens=6)
    raw["evaluate"].update(retain_rows=3, general_rows=2, neighbor_rows=2, max_new_tokens=6, mia=True)
    path = tmp_path_factory.mktemp("matrix") / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_params(path)


@pytest.fixture(scope="module")
def tokenizers():
    return {chat: tiny_tokenizer(chat) for chat in (True, False)}


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """A real MLflow server (SQLite store) with S3 artifacts on SeaweedFS, on free loopback ports."""
    import os

    from lethe.config import StackParams
    from lethe.ops.stack import LOCAL_CREDENTIALS, LocalStack, free_port

    cfg = StackParams(host="127.0.0.1", mlflow_port=free_port("127.0.0.1"), s3_port=free_port("127.0.0.1"),
                      state_dir=str(tmp_path_factory.mktemp("matrix-stack")), artifact_bucket="lethe-mlflow",
                      dvc_bucket="lethe-dvc", schedule_cron="0 2 * * *", timezone="UTC", prefect=False)
    stack = LocalStack(cfg)
    info = stack.up()
    saved = {k: os.environ.get(k) for k in LOCAL_CREDENTIALS}
    os.environ.update(LOCAL_CREDENTIALS)
    yield info
    stack.down()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _write_sets(folder: Path) -> tuple[Path, Path, str]:
    from lethe.supervision.synthesize import QASample

    forget = [QASample(q.question, q.answer, "forget", "gold") for q in author_qa(ANCHOR_INDEX)[1:7]]
    audit = [QASample(q.question, q.answer, "forget", "gold") for q in author_qa(ANCHOR_INDEX)[7:10]]
    neighbor = [QASample(q.question, q.answer, "neighbor", "gold") for i in NEIGHBOR_INDICES for q in author_qa(i)[:3]]
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("forget_set.jsonl", forget), ("neighbor_set.jsonl", neighbor), ("audit_set.jsonl", audit)):
        (folder / name).write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    return folder / "forget_set.jsonl", folder / "neighbor_set.jsonl", author_qa(ANCHOR_INDEX)[0].author


@pytest.mark.parametrize("chat", [True, False], ids=["chat-template", "plain-prompts"])
@pytest.mark.parametrize("kind", ARCHITECTURES)
def test_the_request_path_runs_on_every_architecture(kind, chat, tokenizers, matrix_params, registry, tmp_path):
    import mlflow

    from lethe.evaluate.runner import audit_adapter, combine_suite, evaluate_adapter, suite_models
    from lethe.ops.gate import relearning_check
    from lethe.llm.loading import preflight
    from lethe.mage import MagePipeline, Request, load_samples
    from lethe.ops import registry as reg
    from lethe.ops.compose import compose
    from lethe.supervision.validate import validate_sets
    from lethe.unlearn.run import run_unlearning

    params = matrix_params
    model = build_tiny_model(kind, tmp_path / "model", chat, tokenizer=tokenizers[chat])
    assert preflight(model, "cpu", "auto", None)["weight_gb"] > 0
    forget_set, neighbor_set, anchor = _write_sets(tmp_path / "sets")

    # mine: real sampling, scoring and expansion on this architecture
    pipeline = MagePipeline(Request(anchor=anchor, model_path=str(model), source="mage"), tmp_path / "mine", params)
    for step in ("elicit", "score", "expand", "sample"):
        pipeline.run_step(step)
    responses = (tmp_path / "mine" / "responses_hop0.jsonl").read_text().splitlines()
    assert len(responses) == len(params.elicit.prompts) * params.elicit.samples
    assert (tmp_path / "mine" / "graph.json").is_file() and (tmp_path / "mine" / "paths.jsonl").is_file()

    report = validate_sets(anchor, load_samples(forget_set), load_samples(neighbor_set), None, params.validate_,
                           forget_set.parent / "validation")
    assert report["success"], report

    adapters = {}
    for method in sorted(REGISTRY):
        result = run_unlearning(params, model, forget_set, neighbor_set, method, tmp_path / method,
                                sage=(method == "npo_gd"))
        assert result["steps"] == 2 and set(result["target_modules"]) == EXPECTED_TARGETS[kind]
        raw = Path(result.get("raw_adapter_path", result["adapter_path"]))
        weights = load_file(str(raw / "adapter_model.safetensors"))
        assert {str(w.dtype) for w in weights.values()} == {"torch.float32"}
        adapted = {key.split(".lora_")[0].rsplit(".", 1)[-1] for key in weights}
        assert adapted == EXPECTED_TARGETS[kind]  # every projection, never the head or embeddings
        adapters[method] = Path(result["adapter_path"])
    sage = json.loads((tmp_path / "npo_gd" / "adapter_sage" / "sage_report.json").read_text())
    assert len(sage["layers"]) == params_layers(kind) and sage["mean_retain_bias_after"] <= sage["mean_retain_bias_before"]

    evaluation = evaluate_adapter(params, model, adapters["npo_gd"], [anchor], forget_set, tmp_path / "eval")
    after = evaluation["after"]
    assert 0 <= after["model_utility"] <= 1 and 0 <= after["forget_Q_A_Prob"] <= 1 and 0 <= after["mia_loss_auc"] <= 1
    if kind == ARCHITECTURES[0] and chat:  # the suite split into evaluation shards measures the same numbers
        sides = {which: suite_models(params, model, adapters["npo_gd"], [anchor], forget_set, [which])[which]
                 for which in ("after", "before")}  # one side per load, as on two Dask workers
        sharded = combine_suite(sides["before"], sides["after"])

        def measured(metrics: dict) -> dict:  # the numbers, not what they cost or where they came from
            bookkeeping = {"eval_seconds", M.SCORE_CACHE_HITS, M.SCORE_CACHE_MISSES}
            return {k: v for k, v in metrics.items() if k not in bookkeeping}

        assert measured(sharded["before"]) == measured(evaluation["before"]) and measured(sharded["after"]) == measured(after)
        # both sides on one load (a single `lethe forget`), asked for in shard order: the same numbers
        together = suite_models(params, model, adapters["npo_gd"], [anchor], forget_set, ["after", "before"])
        assert {side: measured(r["metrics"]) for side, r in together.items()} == {
            "before": measured(evaluation["before"]), "after": measured(after)}
        assert sharded["row_rouge"] == evaluation["row_rouge"] and sharded["targets"] == evaluation["targets"]

    gold = [(q.question, q.answer) for q in author_qa(ANCHOR_INDEX)[:4]]
    holdout = [(q.question, q.answer) for q in author_qa(NEIGHBOR_INDICES[0])[:4]]
    shutil.copy(tmp_path / "mine" / "graph.json", forget_set.parent / "graph.json")
    audit = audit_adapter(params, model, adapters["npo_gd"], anchor, forget_set.parent, gold, holdout, None)
    assert audit["heldout_rows"] == 3 and audit["attack_rows"] == 2
    assert {"relearn_heldout_rouge", "q4_heldout_rouge", "q8_heldout_rouge", "reelicit_return"} <= set(audit["after"])
    _lora_attack_leaves_the_model_as_it_was(model, adapters["npo_gd"], gold)
    if kind == ARCHITECTURES[0] and not chat:  # a mined forget set smaller than one attack: audited, marked
        larger = params.model_copy(update={"audit": params.audit.model_copy(update={"relearn_rows": 50})})
        unattacked = audit_adapter(larger, model, adapters["npo_gd"], anchor, forget_set.parent, gold, holdout, None)
        assert unattacked["attack_skipped"].startswith("the forget set has") and unattacked["attack_rows"] == 0
        assert "relearn_heldout_rouge" not in unattacked["after"] and "q4_heldout_rouge" in unattacked["after"]
        relearning = relearning_check(unattacked["before"], unattacked["after"], {}, params.gate)
        assert relearning.passed is False and relearning.note == "the relearning attack was not measured"

    composed = compose(model, [adapters["ga"], adapters["npo_gd"]], tmp_path / "composed")
    assert (composed / "config.json").is_file()

    client = reg.client(registry.tracking_uri)
    name = f"matrix-{kind}-{'chat' if chat else 'plain'}"
    run_id = reg.start_run(client, "architecture-matrix", name, {"architecture": kind})
    info = reg.log_model(run_id, [adapters["ga"], adapters["npo_gd"]], model, max_new_tokens=4)
    version = reg.register_version(client, name, run_id, info, {"lineage.request_id": name, "architecture": kind})
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    answers = loaded.predict([f"Who is {anchor}?", "Where was it written?"])
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)


def params_layers(kind: str) -> int:
    """Adapted layers of a tiny model: per block, one per projection leaf (GPT-2's c_proj twice)."""
    per_block = {"gpt2": 4}.get(kind, len(EXPECTED_TARGETS[kind]))
    return per_block * 2


def _lora_attack_leaves_the_model_as_it_was(model: Path, adapter: Path, rows) -> None:
    """The audit's LoRA relearning attack (no copy of the model) on this architecture's projections
    (fused, Conv1D): it trains, and afterwards the model has exactly its modules and weights again."""
    import torch

    from lethe.evaluate.audit import load_plain, relearned

    backend = load_plain(model, adapter, "cpu", 4)
    plain = backend.model
    weights = {k: v.clone() for k, v in plain.state_dict().items()}
    with relearned(plain, backend.tokenizer, rows[:2], steps=2, lr=1e-2, seed=0, lora_rank=2) as attacked:
        assert any("lora_B" in n and p.abs().sum() > 0 for n, p in attacked.named_parameters())  # it trained
    after = plain.state_dict()
    assert after.keys() == weights.keys() and all(torch.equal(v, after[k]) for k, v in weights.items())
