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
    assert (GRAD_SCALE in result["curves"][-1]) == (name in ("npo", "npo_gd", "simnpo"))
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
