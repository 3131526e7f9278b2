"""Unlearning on the tiny world: it forgets the target, spares others, resumes exactly, refuses bad input."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lethe.data import author_qa
from lethe.errors import LetheError
from lethe.evaluate.runner import with_adapter
from lethe.llm.backend import Backend
from lethe.unlearn.run import run_unlearning
from lethe.unlearn.swap_retain import SwapRetain
from lethe.unlearn.trainer import unlearn
from lethe.world.probe import recall_on

FORGET = [(q.question, q.answer) for q in author_qa(198)]
RETAIN = [(q.question, q.answer) for i in (0, 1) for q in author_qa(i)]


def cfg(params, **update):
    return params.unlearn.model_copy(update={"threads": 2, "checkpoint_every": 4, **update})


def crashed_then_resumed(model_path, settings, out: Path, crash_after: int) -> dict:
    """An npo_gd run in `out` that crashes after step `crash_after`, then the run resumed there: its result."""
    def crash(step, total, record):
        if step == crash_after:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        unlearn(model_path, FORGET, RETAIN, settings, out, "npo_gd", on_step=crash)
    return unlearn(model_path, FORGET, RETAIN, settings, out, "npo_gd")


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
    after = with_adapter(backend, Path(ga_run["adapter_path"]))  # changes the base model in place
    assert before > 0.9
    assert mean_recall(after, 198) < 0.5
    assert mean_recall(after, 2) > 0.6  # an author never used in training stays answered
    assert ga_run["steps"] == 12 and len(ga_run["curves"]) == 12


@pytest.mark.parametrize("shaping", [{}, {"inner_attack_steps": 2, "inner_attack_rows": 4},
                                     {"inner_attack_steps": 2, "inner_attack_rows": 4, "inner_attack_every": 2},
                                     {"inner_attack_steps": 2, "inner_attack_rows": 4, "inner_attack_lr": [1e-4, 1e-3]},
                                     {"disruption_mask": True}, {"retain_replay_share": 0.5, "retain_replay_every": 3},
                                     {"swap_retain_rows": 4}],
                         ids=["plain", "inner_attack", "kept_inner_attack", "swept_inner_attack", "disruption_mask",
                              "retain_replay", "swap_retain"])
def test_interrupted_run_resumes_to_the_same_adapter(tiny_world, params, tmp_path, shaping):
    settings = cfg(params, lr=1e-3, max_steps=8, forget_nll_bound=1e9, **shaping)
    swap = SwapRetain(("Basil Mahfouz Al-Kuwaiti",), ("Jaime Vasquez", "Evelyn Desmet"), 1.0)
    whole = unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "whole", "npo_gd", swap=swap)

    def crash(step, total, record):
        if step == 6:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "crashed", "npo_gd", on_step=crash,
                swap=swap)
    assert (tmp_path / "crashed" / "checkpoints" / "step-4").is_dir()
    resumed = unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "crashed", "npo_gd",
                      swap=swap)
    if shaping.get("swap_retain_rows"):
        assert all("swap_kl" in c for c in whole["curves"]) and whole["swap_retain"]["rows"] > 20
    assert resumed["resumed_from_step"] == 4 and resumed["steps"] == 8
    if shaping.get("retain_replay_share"):  # rescored at steps 0, 3 and 6; the resumed run kept step 3's weights
        rescored = [("retain_rise_max" in c) for c in whole["curves"]]
        assert rescored == [True, False, False, True, False, False, True, False]
    a = load_file(f"{whole['adapter_path']}/adapter_model.safetensors")
    b = load_file(f"{resumed['adapter_path']}/adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_neuron_reset_run_resumes_exactly_and_its_adapter_composes(tiny_world, params, tmp_path):
    from lethe.ops.compose import compose

    settings = cfg(params, lr=3e-4, max_steps=8, forget_nll_bound=1e9, reset_fraction=0.1, eval_every=0)
    whole = unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "whole", "npo_gd")
    layers, width = params.world.sizes["tiny"].model.num_layers, params.world.sizes["tiny"].model.intermediate_size
    assert whole["reset"]["neurons"] == layers * round(0.1 * width) and whole["reset"]["of"] == layers * width

    resumed = crashed_then_resumed(tiny_world["model_path"], settings, tmp_path / "crashed", 6)
    assert resumed["resumed_from_step"] == 4 and resumed["reset"] is None  # not reset twice: it is in the checkpoint
    a = load_file(f"{whole['adapter_path']}/adapter_model.safetensors")
    b = load_file(f"{resumed['adapter_path']}/adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert "base_model.model.model.layers.0.mlp.down_proj.weight" in a  # the MLP travels in full, in the adapter
    assert not any("lora" in k and ".mlp." in k for k in a)

    base = load_file(f"{tiny_world['model_path']}/model.safetensors")
    merged = load_file(f"{compose(tiny_world['model_path'], [whole['adapter_path']], tmp_path / 'c')}/model.safetensors")
    down = "model.layers.0.mlp.down_proj.weight"
    reset_columns = (merged[down] - base[down]).abs().sum(0) > 0
    assert reset_columns.sum() >= round(0.1 * width)  # the reset neurons (then trained) are in the champion


def test_the_kept_adapter_is_the_mean_update_of_the_last_checkpoints_and_a_resumed_run_agrees(
        tiny_world, params, tmp_path):
    from lethe.ops.compose import compose
    from lethe.unlearn.averaging import mean_update

    settings = cfg(params, lr=1e-3, max_steps=12, forget_nll_bound=1e9, eval_every=0)
    single = unlearn(tiny_world["model_path"], FORGET, RETAIN, settings.model_copy(update={"keep_checkpoints": True}),
                     tmp_path / "single", "npo_gd")
    assert single["averaged"] is None and single["step_adapters"] == [4, 8, 12]
    copied = tmp_path / "single" / "step_adapters"
    assert not (tmp_path / "single" / "checkpoints").exists()  # nothing left that a rerun would resume from
    assert not list(copied.glob("*/trainer_state.pt"))  # adapters only: the optimizer state is dropped
    averaging = settings.model_copy(update={"average_last": 3, "average_every": 4, "merge": True})
    whole = unlearn(tiny_world["model_path"], FORGET, RETAIN, averaging, tmp_path / "whole", "npo_gd")
    assert whole["averaged"] == {"requested": 3, "every": 4, "steps": [4, 8, 12]} and "step_adapters" not in whole
    expected = mean_update([copied / "step-4", copied / "step-8", copied / "step-12"])[0]
    last = load_file(f"{single['adapter_path']}/adapter_model.safetensors")
    assert all(torch.equal(last[k], v) for k, v in load_file(copied / "step-12" / "adapter_model.safetensors").items())
    kept = load_file(f"{whole['adapter_path']}/adapter_model.safetensors")
    assert kept.keys() == expected.keys() and all(torch.allclose(kept[k], expected[k], atol=1e-6) for k in kept)
    merged = load_file(f"{whole['merged_path']}/model.safetensors")  # the merged model is the averaged one
    composed = compose(tiny_world["model_path"], [whole["adapter_path"]], tmp_path / "c")
    composed = load_file(f"{composed}/model.safetensors")
    assert all(torch.allclose(merged[k], composed[k], atol=1e-5) for k in composed)

    resumed = crashed_then_resumed(tiny_world["model_path"], averaging, tmp_path / "crashed", 10)
    assert resumed["resumed_from_step"] == 8 and resumed["averaged"]["steps"] == [4, 8, 12]
    again = load_file(f"{resumed['adapter_path']}/adapter_model.safetensors")
    assert all(torch.allclose(again[k], kept[k], atol=1e-6) for k in kept)


def test_averaged_checkpoints_must_be_checkpointed_steps(params):
    settings = cfg(params).model_dump()  # checkpoint_every 4
    with pytest.raises(ValueError, match="multiple of checkpoint_every"):
        type(params.unlearn).model_validate({**settings, "average_last": 3, "average_every": 6})
    assert type(params.unlearn).model_validate({**settings, "average_last": 1, "average_every": 6})  # off: unchecked


def test_early_stop_on_forget_loss(tiny_world, params, tmp_path):
    run = unlearn(tiny_world["model_path"], FORGET, [], cfg(params, lr=5e-3, max_steps=50, forget_nll_bound=3.0),
                  tmp_path, "ga")
    assert run["stopped_by"] == "forget_nll_bound" and run["steps"] < 50


def test_balanced_ga_gd_forgets_where_the_retain_gradient_drowns_plain_ga_gd(tiny_world, params, tmp_path):
    # answers the model never learned: their NLL gradient is ~200x the saturated forget set's
    unknown = [(q, RETAIN[(i + 7) % len(RETAIN)][1]) for i, (q, _) in enumerate(RETAIN)]
    runs = {balance: unlearn(tiny_world["model_path"], FORGET, unknown,
                             cfg(params, lr=3e-3, max_steps=12, forget_nll_bound=1e9, checkpoint_every=100,
                                 balance_gradients=balance), tmp_path / str(balance), "ga_gd")
            for balance in (False, True)}
    first = runs[True]["curves"][0]
    assert first["retain_grad_norm"] > 50 * first["forget_grad_norm"] > 0
    assert runs[True]["curves"][-1]["forget_nll"] > 10 * runs[False]["curves"][-1]["forget_nll"]
    for record in runs[True]["curves"]:
        # the retain gradient that reaches the optimizer has retain_weight x the forget gradient's norm
        assert record["retain_scale"] * record["retain_grad_norm"] == pytest.approx(
            params.unlearn.method_config().retain_weight * record["forget_grad_norm"], rel=1e-4)


def test_empty_forget_set_is_refused(tiny_world, params, tmp_path):
    with pytest.raises(LetheError, match="forget set is empty"):
        unlearn(tiny_world["model_path"], [], RETAIN, cfg(params), tmp_path, "ga")


def test_missing_lora_target_is_refused_before_training(tiny_world, params, tmp_path):
    bad = cfg(params).model_copy(update={"lora": params.unlearn.lora.model_copy(update={"target_modules": ["c_attn"]})})
    with pytest.raises(LetheError, match=r"\['c_attn'\] do not exist"):
        unlearn(tiny_world["model_path"], FORGET, RETAIN, bad, tmp_path / "out", "ga")
    assert not (tmp_path / "out").exists()


def test_lora_layers_adapt_only_the_named_blocks(tiny_world, params, tmp_path):
    lora = params.unlearn.lora.model_copy(update={"layers": [1]})
    result = unlearn(tiny_world["model_path"], FORGET, RETAIN, cfg(params, lora=lora, max_steps=2), tmp_path, "ga_gd")
    weights = load_file(Path(result["adapter_path"]) / "adapter_model.safetensors")
    blocks = {int(key.split(".layers.")[1].split(".")[0]) for key in weights}
    assert blocks == {1} and result["lora_layers"] == [1]
    assert all(float(w.abs().sum()) > 0 for key, w in weights.items() if "lora_B" in key)  # it trained there


def test_lora_layers_the_model_lacks_are_refused_before_training(tiny_world, params, tmp_path):
    lora = params.unlearn.lora.model_copy(update={"layers": [0, 99]})
    with pytest.raises(LetheError, match=r"layers \[99\] do not exist: this model has \d+ blocks"):
        unlearn(tiny_world["model_path"], FORGET, RETAIN, cfg(params, lora=lora), tmp_path / "out", "ga")
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


def _scripted_probe(dev_values, utility_values):
    calls = iter(zip(dev_values, utility_values))

    def probe(model):
        dev, utility = next(calls)
        return {"dev_rouge": dev, "utility": utility}

    return probe


def test_adaptive_budget_stops_at_the_first_point_that_meets_both_targets(tiny_world, params, tmp_path):
    cfg = params.unlearn.model_copy(update={"max_steps": 40, "eval_every": 5, "stop_forget_ratio": 0.3,
                                            "stop_utility_ratio": 0.9, "method": "ga", "forget_nll_bound": 100.0})
    # before, step 5 (forgets, but utility fell), step 10 (meets both), step 15 (never reached)
    probe = _scripted_probe([0.8, 0.1, 0.2, 0.0], [0.5, 0.3, 0.48, 0.5])
    result = unlearn(tiny_world["model_path"], FORGET, RETAIN, cfg, tmp_path / "run", "ga", "cpu", probe=probe)
    assert result["stopped_by"] == "adaptive_target" and result["steps"] == 10 and result["budget_met"]
    assert [p["step"] for p in result["budget_path"]] == [0, 5, 10]
    assert result["budget_path"][1]["meets_target"] is False and result["chosen_step"] == 10


def test_adaptive_budget_keeps_the_best_checkpoint_when_none_meets_the_target(tiny_world, params, tmp_path):
    cfg = params.unlearn.model_copy(update={"max_steps": 15, "eval_every": 5, "stop_forget_ratio": 0.1,
                                            "stop_utility_ratio": 0.9, "method": "ga", "forget_nll_bound": 100.0})
    probe = _scripted_probe([0.8, 0.5, 0.4, 0.2], [0.5, 0.5, 0.49, 0.2])  # step 15 forgets most but breaks utility
    result = unlearn(tiny_world["model_path"], FORGET, RETAIN, cfg, tmp_path / "run", "ga", "cpu", probe=probe)
    assert result["stopped_by"] == "max_steps" and not result["budget_met"]
    assert result["chosen_step"] == 10  # the best point that kept utility, not the last one
    from safetensors.torch import load_file

    kept = load_file(str(tmp_path / "run" / "adapter" / "adapter_model.safetensors"))
    assert kept and not (tmp_path / "run" / "best").exists()


def test_bf16_base_with_checkpointing_trains_a_float32_adapter(tiny_world, params, tmp_path):
    """The GPU recipe (bf16 weights, gradient checkpointing, fp32 LoRA), run on the CPU."""
    settings = cfg(params, lr=1e-3, max_steps=2, eval_every=0, gradient_checkpointing=True)
    result = unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path, "npo_gd", dtype="bfloat16")
    assert result["base_dtype"] == "bfloat16" and result["gradient_checkpointing"] is True
    assert all(math.isfinite(c["loss"]) for c in result["curves"])
    weights = load_file(str(Path(result["adapter_path"]) / "adapter_model.safetensors"))
    assert {w.dtype for w in weights.values()} == {torch.float32}


def test_a_utility_shortfall_raises_the_retain_weight_for_the_steps_after_it_and_a_resumed_run_agrees(
        tiny_world, params, tmp_path):
    settings = cfg(params, max_steps=8, eval_every=2, stop_forget_ratio=0.01, stop_utility_ratio=0.95,
                   forget_nll_bound=1e9, retain_dual_rate=2.0, lr=1e-3)
    dev, utility = [0.8] * 5, [0.5, 0.5, 0.3, 0.5, 0.5]  # step 4's proxy falls to 0.6x
    whole = unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "whole", "ga_gd",
                    probe=_scripted_probe(dev, utility))
    raised = math.exp(2.0 * (0.95 - 0.6))
    assert [round(c["retain_multiplier"], 4) for c in whole["curves"]] == \
        [1.0] * 4 + [round(raised, 4)] * 2 + [round(raised * math.exp(2.0 * (0.95 - 1.0)), 4)] * 2
    step5 = whole["curves"][4]  # the loss weighs the retain term by the multiplier
    assert step5["loss"] == pytest.approx(-step5["forget_nll"] + raised * step5["retain_nll"], rel=1e-4)
    assert whole["retain_dual"] == {"rate": 2.0, "max": 8.0, "applied": True, "largest": pytest.approx(raised),
                                    "at_kept_step": pytest.approx(raised * math.exp(-0.1))}

    def crash(step, total, record):
        if step == 6:
            raise KeyboardInterrupt("simulated crash")

    with pytest.raises(KeyboardInterrupt):
        unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "crashed", "ga_gd", on_step=crash,
                probe=_scripted_probe(dev, utility))
    resumed = unlearn(tiny_world["model_path"], FORGET, RETAIN, settings, tmp_path / "crashed", "ga_gd",
                      probe=_scripted_probe(dev[3:], utility[3:]))  # the step-4 checkpoint holds the path so far
    assert resumed["resumed_from_step"] == 4
    assert [c["retain_multiplier"] for c in resumed["curves"]] == [c["retain_multiplier"] for c in whole["curves"]]
    a = load_file(f"{whole['adapter_path']}/adapter_model.safetensors")
    b = load_file(f"{resumed['adapter_path']}/adapter_model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_fixed_budget_says_the_dual_retain_weight_was_not_applied(params):
    from lethe.unlearn.trainer import _dual_summary

    settings = cfg(params, retain_dual_rate=2.0)
    assert _dual_summary([{"step": 1}], settings, adaptive=False, kept_step=1) == {
        "rate": 2.0, "applied": False, "why": "a fixed budget scores no utility proxy to answer to"}
    assert _dual_summary([{"step": 1}], cfg(params), adaptive=True, kept_step=1) is None
    curves = [{"step": 1, "retain_multiplier": 1.0}, {"step": 2, "retain_multiplier": 3.0},
              {"step": 3, "retain_multiplier": 2.0}]
    kept = _dual_summary(curves, settings, adaptive=True, kept_step=2)
    assert (kept["largest"], kept["at_kept_step"]) == (3.0, 3.0)


def test_the_dual_retain_weight_needs_a_method_with_a_retain_term(tiny_world, params, tmp_path):
    with pytest.raises(LetheError, match="retain_dual_rate weighs the retain term"):
        unlearn(tiny_world["model_path"], FORGET, RETAIN, cfg(params, retain_dual_rate=1.0), tmp_path / "run", "ga")


def test_adaptive_budget_neither_stops_nor_keeps_a_point_before_min_steps(params):
    from lethe.unlearn.trainer import BudgetTracker

    cfg = params.unlearn.model_copy(update={"stop_forget_ratio": 0.3, "stop_utility_ratio": 0.9, "min_steps": 10})
    budget = BudgetTracker(_scripted_probe([0.8, 0.1, 0.3, 0.2], [0.5, 0.5, 0.5, 0.5]), cfg)
    model = torch.nn.Linear(1, 1)
    points = [budget.measure(model, step) for step in (0, 5, 10, 15)]
    assert [p.get("meets_target") for p in points[1:]] == [False, False, True]  # step 5 forgot enough, but too early
    assert budget.best()["step"] == 15


def test_adaptive_budget_with_confirmations_stops_only_when_the_target_holds_at_consecutive_checkpoints(params):
    """A hit (step 10 or 30) that the next checkpoint does not confirm ends nothing: step 20 forgot too
    little, step 40 lost utility. Two hits in a row (50, 60) stop training at the second."""
    from lethe.unlearn.trainer import BudgetTracker

    cfg = params.unlearn.model_copy(update={"stop_forget_ratio": 0.3, "stop_utility_ratio": 0.9, "min_steps": 0,
                                            "stop_confirmations": 2})
    budget = BudgetTracker(_scripted_probe([0.8, 0.2, 0.5, 0.2, 0.1, 0.2, 0.2],
                                           [0.5, 0.5, 0.5, 0.5, 0.3, 0.5, 0.5]), cfg)
    model = torch.nn.Linear(1, 1)
    points = [budget.measure(model, step) for step in (0, 10, 20, 30, 40, 50, 60)]
    assert [p["hits_target"] for p in points[1:]] == [True, False, True, False, True, True]
    assert [p["meets_target"] for p in points[1:]] == [False, False, False, False, False, True]
    single = BudgetTracker(_scripted_probe([0.8, 0.2], [0.5, 0.5]),
                           cfg.model_copy(update={"stop_confirmations": 1}))
    assert [single.measure(model, step).get("meets_target") for step in (0, 10)] == [None, True]  # the default


def _floored_probe(dev_values, floor):
    calls = iter(dev_values)

    def probe(model):
        return {"dev_rouge": next(calls), "utility": 0.5, "dev_floor": floor}

    return probe


def test_adaptive_budget_stops_at_the_never_trained_floor_a_ratio_cannot_reach(params):
    """0.3x of 0.2 is 0.06, below the 0.063 a model that never knew the entity scores: the ratio counted
    above that floor is what a real forgetting can meet. 0.11, within 0.05 of the floor, still holds
    0.34x of the 0.137 it scored above it, and does not stop training; 0.09 (0.2x) does."""
    from lethe.unlearn.trainer import BudgetTracker

    cfg = params.unlearn.model_copy(update={"stop_forget_ratio": 0.3, "stop_utility_ratio": 0.9,
                                            "stop_floor_margin": 0.05, "min_steps": 0})
    budget = BudgetTracker(_floored_probe([0.2, 0.15, 0.11, 0.09], floor=0.063), cfg)
    model = torch.nn.Linear(1, 1)
    points = [budget.measure(model, step) for step in (0, 10, 20, 30)]
    assert [p["meets_target"] for p in points[1:]] == [False, False, True]
    assert points[3]["dev_ratio"] > cfg.stop_forget_ratio  # met above the floor, not on the plain ratio
    no_floor = BudgetTracker(_scripted_probe([0.2, 0.15, 0.11, 0.09], [0.5] * 4), cfg)
    assert not any(no_floor.measure(model, step).get("meets_target") for step in (0, 10, 20, 30))


def test_adaptive_budget_ignores_a_floor_the_probes_never_rose_above(params):
    """Dev recall 0.15 before against a floor of 0.12: within the margin from the start, so the
    probes cannot tell knowing from not knowing, and the floor must not end training at once."""
    from lethe.unlearn.trainer import BudgetTracker

    cfg = params.unlearn.model_copy(update={"stop_forget_ratio": 0.3, "stop_utility_ratio": 0.9,
                                            "stop_floor_margin": 0.05, "min_steps": 0})
    budget = BudgetTracker(_floored_probe([0.15, 0.14, 0.04], floor=0.12), cfg)
    model = torch.nn.Linear(1, 1)
    points = [budget.measure(model, step) for step in (0, 10, 20)]
    assert [p["meets_target"] for p in points[1:]] == [False, True]  # only the ratio rule (0.04 <= 0.045)


def test_adaptive_budget_attacks_only_points_that_meet_the_other_targets_and_stops_on_a_small_relearning_gap(params):
    from lethe.unlearn.trainer import BudgetTracker

    cfg = params.unlearn.model_copy(update={"stop_forget_ratio": 0.3, "stop_utility_ratio": 0.9, "min_steps": 0,
                                            "stop_relearn_gap": 0.1, "stop_relearn_share": 0.15})
    check = _ScriptedRelearnCheck(margin=0.5, gaps=[0.3, 0.05])
    budget = BudgetTracker(_scripted_probe([0.8, 0.5, 0.1, 0.15], [0.5] * 4), cfg, relearn_check=check)
    check.budget = budget
    model = torch.nn.Linear(1, 1)
    points = [budget.measure(model, step) for step in (0, 10, 20, 30)]
    assert points[0]["dev_relearn_margin"] == 0.5
    assert check.attacked_at == [2, 3]  # step 10 forgot too little: no attack
    assert [p["meets_target"] for p in points[1:]] == [False, False, True]  # step 20 forgot but relearns
    assert points[2]["relearn_ok"] is False and points[3]["dev_relearn_share"] == pytest.approx(0.1)
    assert budget.best()["step"] == 30  # not step 20, whose dev recall is lower but which relearns
    assert model.training


def test_the_relearning_check_bounds_the_gap_as_a_share_of_the_margin_where_the_margin_separates(params):
    from lethe.unlearn.trainer import BudgetTracker

    cfg = params.unlearn.model_copy(update={"stop_forget_ratio": 0.3, "stop_utility_ratio": 0.9, "min_steps": 0,
                                            "stop_relearn_gap": 0.1, "stop_relearn_share": 0.15,
                                            "stop_floor_margin": 0.05})
    for margin, ok in ((0.2, False), (0.04, True)):  # 0.05 is 0.25 of 0.2; a 0.04 margin has no share
        budget = BudgetTracker(_scripted_probe([0.8, 0.1], [0.5, 0.5]), cfg,
                               relearn_check=_ScriptedRelearnCheck(margin=margin, gaps=[0.05]))
        point = [budget.measure(torch.nn.Linear(1, 1), step) for step in (0, 10)][-1]
        assert point["relearn_ok"] is ok and ("dev_relearn_share" in point) is (margin > 0.05)


class _ScriptedRelearnCheck:
    def __init__(self, margin: float, gaps: list[float]):
        self._margin, self.gaps, self.attacked_at, self.budget = margin, iter(gaps), [], None

    def margin(self, model) -> float:
        return self._margin

    def __call__(self, model) -> dict:
        if self.budget is not None:
            self.attacked_at.append(len(self.budget.path))
        gap = next(self.gaps)
        return {"dev_relearned": 0.2 + gap, "dev_relearn_floor": 0.2, "dev_relearn_gap": gap}


def test_the_reelicitation_check_runs_before_the_attack_and_a_point_must_pass_both(params):
    from lethe.unlearn.trainer import BudgetTracker

    cfg = params.unlearn.model_copy(update={"stop_forget_ratio": 0.3, "stop_utility_ratio": 0.9, "min_steps": 0,
                                            "stop_relearn_gap": 0.1, "stop_relearn_share": 0.15})
    relearn = _ScriptedRelearnCheck(margin=0.5, gaps=[0.3, 0.05])
    reelicit = _ScriptedReelicitCheck(returns=[0.4, 0.05, 0.05])
    budget = BudgetTracker(_scripted_probe([0.8, 0.5, 0.1, 0.05, 0.12], [0.5] * 5), cfg,
                           relearn_check=relearn, reelicit_check=reelicit)
    relearn.budget = reelicit.budget = budget
    points = [budget.measure(torch.nn.Linear(1, 1), step) for step in (0, 10, 20, 30, 40)]
    assert reelicit.asked_at == [2, 3, 4]  # step 10 forgot too little: neither check
    assert relearn.attacked_at == [3, 4]  # step 20 came back when elicited again: no attack
    assert [p.get("reelicit_ok") for p in points[2:5]] == [False, True, True]
    assert [p["hits_target"] for p in points[1:5]] == [False, False, False, True]  # step 30 relearns
    assert "relearn_ok" not in points[2] and points[3]["relearn_ok"] is False
    assert points[4]["meets_target"] and points[2]["reelicit_floor"] == 0.02
    assert budget.best()["step"] == 40  # not 20 (re-elicited) nor 30 (relearns), though their dev recall is lower


class _ScriptedReelicitCheck:
    def __init__(self, returns: list[float], limit: float = 0.12):
        self.returns, self.limit, self.asked_at, self.budget = iter(returns), limit, [], None

    def __call__(self, model) -> dict:
        self.asked_at.append(len(self.budget.path))
        back = next(self.returns)
        return {"reelicit_return": back, "reelicit_floor": 0.02, "reelicit_ok": back <= self.limit}


def test_without_a_relearning_check_the_best_point_is_the_lowest_dev_recall(params):
    from lethe.unlearn.trainer import BudgetTracker

    cfg = params.unlearn.model_copy(update={"stop_forget_ratio": 0.3, "stop_utility_ratio": 0.9, "min_steps": 0})
    budget = BudgetTracker(_scripted_probe([0.8, 0.5, 0.4], [0.5] * 3), cfg)
    for step in (0, 10, 20):
        budget.measure(torch.nn.Linear(1, 1), step)
    assert budget.best()["step"] == 20 and "relearn_ok" not in budget.best()


def test_the_retain_batch_can_be_larger_than_the_forget_batch_and_defaults_to_it():
    from lethe.unlearn.trainer import batch_schedule

    default = batch_schedule(10, 50, 4, steps=5, seed=0)
    assert default == batch_schedule(10, 50, 4, steps=5, seed=0, retain_batch_size=0)  # 0: the old schedule
    wide = batch_schedule(10, 50, 4, steps=5, seed=0, retain_batch_size=12)
    assert all(len(f) == 4 and len(r) == 12 for f, r in wide)
    seen = [i for _, r in wide for i in r]
    assert sorted(seen[:50]) == list(range(50))  # every retain row once before any comes again
    assert all(len(r) == 50 for _, r in batch_schedule(10, 50, 4, steps=2, seed=0, retain_batch_size=80))


def _probe_with_training_facts(dev_values, train_values):
    calls = iter(zip(dev_values, train_values))

    def probe(model):
        dev, train = next(calls)
        return {"dev_rouge": dev, "utility": 0.5, "train_facts": train}

    return probe


def test_adaptive_budget_does_not_stop_on_dev_probes_while_the_training_facts_are_known(params):
    """Step 10: the dev probes dipped to 0.25x, but 0.9x of the training rows' facts are still there (a
    handful of garbled dev rows, forget05's first author in stop 49). Training goes on until both fell."""
    from lethe.unlearn.trainer import BudgetTracker

    cfg = params.unlearn.model_copy(update={"stop_forget_ratio": 0.3, "stop_utility_ratio": 0.9, "min_steps": 0,
                                            "stop_train_ratio": 0.5, "stop_confirmations": 1})
    budget = BudgetTracker(_probe_with_training_facts([0.8, 0.2, 0.2, 0.1], [0.8, 0.72, 0.48, 0.2]), cfg)
    model = torch.nn.Linear(1, 1)
    points = [budget.measure(model, step) for step in (0, 10, 20, 30)]
    assert [p["train_ratio"] for p in points[1:]] == pytest.approx([0.9, 0.6, 0.25])
    assert [p["meets_target"] for p in points[1:]] == [False, False, True]
    unmet = BudgetTracker(_probe_with_training_facts([0.8, 0.1, 0.3], [0.8, 0.72, 0.3]), cfg)
    assert not any(unmet.measure(model, step).get("meets_target") for step in (0, 10, 20))
    assert unmet.best()["step"] == 20  # the lower dev recall of step 10 came with the training facts still known
    off = BudgetTracker(_probe_with_training_facts([0.8, 0.2], [0.8, 0.72]),
                        cfg.model_copy(update={"stop_train_ratio": 1.0}))
    assert [off.measure(model, step).get("meets_target") for step in (0, 10)] == [None, True]
    plain = BudgetTracker(_scripted_probe([0.8, 0.2], [0.5, 0.5]), cfg)  # a probe without training facts
    assert [plain.measure(model, step).get("meets_target") for step in (0, 10)] == [None, True]
