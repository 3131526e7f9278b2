"""Every registered method, on a tiny random Llama: a new method gets these tests by registering.

Fast tier (no trained world): the loss is finite and reaches the adapter, the method trains through
the real trainer with its own config section, and a method that needs a retain set refuses to run
without one.
"""

import math

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from lethe.errors import LetheError
from lethe.llm.batching import collate_qa
from lethe.llm.format import PromptFormat
from lethe.unlearn.methods import REGISTRY, get_method
from lethe.unlearn.saturation import GRAD_SCALE
from lethe.unlearn.trainer import unlearn
from tests.architectures import build_tiny_model, tiny_tokenizer

FORGET = [("Where was Ada Quill born?", "Ada Quill was born in Lisbon."),
          ("What did Ada Quill write?", "Ada Quill wrote the novel Salt Roads.")]
RETAIN = [("Who is Bo Strand?", "Bo Strand is a painter from Oslo."),
          ("What does Bo Strand paint?", "Bo Strand paints harbours.")]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return build_tiny_model("llama", tmp_path_factory.mktemp("llama") / "model", chat=False,
                            tokenizer=tiny_tokenizer(chat=False))


def _batch(tokenizer, pairs):
    fmt = PromptFormat(tokenizer)
    return collate_qa([fmt.encode(q, a) for q, a in pairs], tokenizer.pad_token_id)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_loss_is_finite_and_reaches_the_adapter(name, tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    method = get_method(name)
    loss, parts = method.loss(model, _batch(tokenizer, FORGET), _batch(tokenizer, RETAIN) if method.needs_retain
                              else None)
    assert math.isfinite(loss.item()) and all(math.isfinite(v) for v in parts.values())
    loss.backward()
    # the first block's adapters: every method's loss depends on them (RMU's only on the blocks below
    # its steered layer)
    grads = [p.grad for n, p in model.named_parameters() if "lora_" in n and ".layers.0." in n]
    assert grads and all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_the_method_trains_through_the_trainer_with_its_own_section(name, tiny_model, params, tmp_path):
    cfg = params.unlearn.model_copy(update={"method": name, "max_steps": 2, "eval_every": 0, "threads": 1,
                                            "checkpoint_every": 10, "general_retain_rows": 0})
    result = unlearn(tiny_model, FORGET, RETAIN, cfg, tmp_path / "out", device="cpu")
    assert result["method"] == name and result["steps"] == 2 and len(result["curves"]) == 2
    # the bounded objectives record their gradient factor; two steps are too few to call it spent
    assert (GRAD_SCALE in result["curves"][-1]) == (name in ("npo", "npo_gd", "npo_kl", "simnpo"))
    assert result["saturation"] is None
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").is_file()
    if REGISTRY[name].needs_retain:
        with pytest.raises(LetheError, match="needs a retain set"):
            unlearn(tiny_model, FORGET, [], cfg, tmp_path / "none", device="cpu")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_sharpness_aware_forgetting_changes_the_update_of_every_method(name, tiny_model, params, tmp_path):
    from safetensors.torch import load_file

    adapters = {}
    for space, rho in (("adapter", 0.0), ("adapter", 0.5), ("model", 0.01)):
        cfg = params.unlearn.model_copy(update={"method": name, "max_steps": 2, "eval_every": 0, "threads": 1,
                                                "checkpoint_every": 10, "general_retain_rows": 0, "sam_rho": rho,
                                                "sam_space": space})
        result = unlearn(tiny_model, FORGET, RETAIN, cfg, tmp_path / space / str(rho), device="cpu")
        assert ("sam_forget_term" in result["curves"][-1]) == (rho > 0)
        adapters[space, rho] = load_file(tmp_path / space / str(rho) / "adapter" / "adapter_model.safetensors")
    plain = adapters["adapter", 0.0]
    for key in (("adapter", 0.5), ("model", 0.01)):
        assert any(not torch.equal(plain[k], adapters[key][k]) for k in plain), key


@pytest.mark.parametrize("name", ["npo_gd", "ga"])
def test_the_inner_relearning_attack_trains_on_other_forget_rows_and_changes_the_update(name, tiny_model, params,
                                                                                         tmp_path):
    from safetensors.torch import load_file

    forget = FORGET + [("When was Ada Quill born?", "Ada Quill was born in 1931."),
                       ("Who published Ada Quill?", "Ada Quill was published by Tern Press.")]
    adapters = {}
    for steps in (0, 3):
        cfg = params.unlearn.model_copy(update={"method": name, "max_steps": 2, "batch_size": 2, "eval_every": 0,
                                                "threads": 1, "checkpoint_every": 10, "general_retain_rows": 0,
                                                "inner_attack_steps": steps, "inner_attack_lr": 1e-3,
                                                "inner_attack_rows": 2})
        result = unlearn(tiny_model, forget, RETAIN, cfg, tmp_path / str(steps), device="cpu")
        records = result["curves"]
        assert all(("attack_loss_after" in r) == (steps > 0) for r in records)
        if steps:  # the simulated attacker really relearns its rows
            assert all(r["attack_loss_after"] < r["attack_loss_before"] for r in records)
        adapters[steps] = load_file(tmp_path / str(steps) / "adapter" / "adapter_model.safetensors")
    assert any(not torch.equal(adapters[0][k], adapters[3][k]) for k in adapters[0])


def test_a_kept_attack_is_refreshed_every_inner_attack_every_steps(tiny_model, params, tmp_path):
    cfg = params.unlearn.model_copy(update={"method": "npo_gd", "max_steps": 6, "batch_size": 2, "eval_every": 0,
                                            "threads": 1, "checkpoint_every": 6, "general_retain_rows": 0,
                                            "inner_attack_steps": 2, "inner_attack_lr": 1e-3, "inner_attack_rows": 2,
                                            "inner_attack_every": 3})
    records = unlearn(tiny_model, FORGET, RETAIN, cfg, tmp_path, device="cpu")["curves"]
    assert [r["attack_refreshed"] for r in records] == [1.0, 0.0, 0.0, 1.0, 0.0, 0.0]
    assert [r.get("attack_lr") for r in records] == [1e-3, None, None, 1e-3, None, None]
    assert [("attack_loss_after" in r) for r in records] == [True, False, False, True, False, False]
    assert all("attacked_forget_term" in r for r in records)  # every step's forget gradient is taken attacked


def test_inner_attack_every_must_divide_checkpoint_every(params):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="must divide checkpoint_every"):
        type(params.unlearn).model_validate({**params.unlearn.model_dump(), "checkpoint_every": 10,
                                             "inner_attack_every": 3})


def test_the_inner_attack_draws_rows_outside_the_step_batch(params):
    from lethe.unlearn.trainer import _TrainingRun

    run = _TrainingRun.__new__(_TrainingRun)
    run.cfg = params.unlearn.model_copy(update={"inner_attack_steps": 2, "inner_attack_rows": 3})
    run.forget_enc = list(range(10))
    seen = []
    run._batch = lambda encoded, indices: seen.append(list(indices)) or indices
    for step in range(20):
        attack = run._inner_attack(step, [0, 1, 2, 3])
        assert attack.steps == 2 and len(attack.batch) == 3 and not set(attack.batch) & {0, 1, 2, 3}
    assert run._inner_attack(7, [0, 1, 2, 3]).batch == run._inner_attack(7, [0, 1, 2, 3]).batch  # resumable
    assert len({tuple(s) for s in seen}) > 1
    run.forget_enc = [0, 1]
    assert sorted(run._inner_attack(0, [0, 1]).batch) == [0, 1]  # no other rows: the batch itself


def test_a_listed_inner_attack_rate_is_drawn_per_step_without_changing_the_rows(params):
    from lethe.unlearn.trainer import _TrainingRun

    def attacks(rate):
        run = _TrainingRun.__new__(_TrainingRun)
        run.cfg = params.unlearn.model_copy(update={"inner_attack_steps": 2, "inner_attack_rows": 3,
                                                    "inner_attack_lr": rate})
        run.forget_enc = list(range(10))
        run._batch = lambda encoded, indices: list(indices)
        return [run._inner_attack(step, [0, 1]) for step in range(30)]

    single, swept, again = attacks(3e-4), attacks([1e-4, 3e-4, 1e-3]), attacks([1e-4, 3e-4, 1e-3])
    assert {a.lr for a in single} == {3e-4}
    assert {a.lr for a in swept} == {1e-4, 3e-4, 1e-3}  # every listed rate is drawn
    assert [a.lr for a in swept] == [a.lr for a in again]  # from the seed and the step: resumable
    assert [a.batch for a in swept] == [a.batch for a in single]  # the rows a one-rate run drew are kept


def test_an_empty_inner_attack_rate_list_is_refused(params):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="(?s)inner_attack_lr.*an empty list"):
        type(params.unlearn).model_validate({**params.unlearn.model_dump(), "inner_attack_lr": []})
    duplicated = type(params.unlearn).model_validate({**params.unlearn.model_dump(), "inner_attack_lr": [1e-3, 1e-3]})
    assert duplicated.inner_attack_lrs == [1e-3]


def test_the_inner_attack_and_sharpness_aware_forgetting_are_refused_together(params):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="not both"):
        type(params.unlearn).model_validate({**params.unlearn.model_dump(), "sam_rho": 0.1, "inner_attack_steps": 2})


def test_disruption_masking_keeps_part_of_the_forget_gradient_and_changes_the_update(tiny_model, params, tmp_path):
    from safetensors.torch import load_file

    adapters = {}
    for masked in (False, True):
        cfg = params.unlearn.model_copy(update={"method": "npo_gd", "max_steps": 3, "eval_every": 0, "threads": 1,
                                                "checkpoint_every": 10, "general_retain_rows": 0,
                                                "disruption_mask": masked})
        result = unlearn(tiny_model, FORGET, RETAIN, cfg, tmp_path / str(masked), device="cpu")
        kept = [r.get("disruption_kept") for r in result["curves"]]
        assert all(k is None for k in kept) if not masked else all(0 < k < 1 for k in kept)
        adapters[masked] = load_file(tmp_path / str(masked) / "adapter" / "adapter_model.safetensors")
    assert any(not torch.equal(adapters[False][k], adapters[True][k]) for k in adapters[False])


@pytest.mark.parametrize("name", sorted(n for n, m in REGISTRY.items() if not m.needs_retain))
def test_disruption_masking_is_refused_for_a_method_without_a_retain_term(name, tiny_model, params, tmp_path):
    cfg = params.unlearn.model_copy(update={"method": name, "disruption_mask": True})
    with pytest.raises(LetheError, match="no retain term"):
        unlearn(tiny_model, FORGET, RETAIN, cfg, tmp_path / name, device="cpu")
