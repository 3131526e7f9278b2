import math

import pytest
import torch

from lethe.config import MethodConfig, NpoConfig, RmuConfig, SraConfig
from lethe.errors import LetheError
from lethe.llm.batching import collate_qa
from lethe.unlearn.methods import REGISTRY, get_method, hidden_states, nll
from tests.architectures import EXPECTED_TARGETS, config_for


def test_registry_has_every_method():
    assert {"ga", "npo", "ga_gd", "ga_kl", "npo_gd", "npo_kl", "simnpo", "sra", "rmu"} <= set(REGISTRY)
    with pytest.raises(LetheError, match="unknown unlearning method"):
        get_method("forget_harder")


def _peft(tiny_world):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_world["model_path"])
    return get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                           task_type="CAUSAL_LM"))


def _batch(backend, author):
    from lethe.data import author_qa

    rows = author_qa(author)[:4]
    return collate_qa([backend.format.encode(r.question, r.answer) for r in rows], backend.tokenizer.pad_token_id)


def test_losses_at_initialization(tiny_world, tiny_backend):
    model = _peft(tiny_world)  # LoRA B starts at zero: the model equals its reference
    forget, retain = _batch(tiny_backend, 198), _batch(tiny_backend, 0)
    with torch.no_grad():
        forget_nll, retain_nll = nll(model, forget).item(), nll(model, retain).item()
        ga, _ = get_method("ga").loss(model, forget, None)
        gd, _ = get_method("ga_gd", MethodConfig(retain_weight=2.0)).loss(model, forget, retain)
        npo, parts = get_method("npo", NpoConfig(beta=0.1)).loss(model, forget, None)
        kl, kl_parts = get_method("ga_kl").loss(model, forget, retain)
        npo_kl, npo_kl_parts = get_method("npo_kl", NpoConfig(beta=0.1)).loss(model, forget, retain)
    assert ga.item() == pytest.approx(-forget_nll, rel=1e-5)
    assert gd.item() == pytest.approx(-forget_nll + 2 * retain_nll, rel=1e-5)
    assert parts["log_ratio"] == pytest.approx(0.0, abs=1e-4)
    assert npo.item() == pytest.approx(2 / 0.1 * math.log(2), rel=1e-4)  # -(2/b) log sigmoid(0)
    assert kl_parts["retain_kl"] == pytest.approx(0.0, abs=1e-6)
    assert npo_kl_parts["retain_kl"] == pytest.approx(0.0, abs=1e-6)  # NPO's start value, nothing from retain
    assert npo_kl.item() == pytest.approx(npo.item(), rel=1e-4)


def test_retain_methods_need_retain_data(tiny_world, tiny_backend):
    model = _peft(tiny_world)
    with pytest.raises(LetheError, match="retain set"):
        get_method("ga_gd").loss(model, _batch(tiny_backend, 198), None)


def _answer_entropy(model, batch) -> float:
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    mask = batch["labels"][:, 1:] != -100
    logp = torch.log_softmax(logits[mask].float(), -1)
    return float(-(logp.exp() * logp).sum(-1).mean())


def _train(method, model, forget, retain, steps: int, lr: float) -> dict[str, float]:
    """`steps` AdamW steps on `method`'s loss over the trainable weights; the last step's parts."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        loss, parts = method.loss(model, forget, retain)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return parts


def test_sra_pulls_forget_answers_toward_high_entropy_and_keeps_retain(tiny_world, tiny_backend):
    torch.manual_seed(0)
    model = _peft(tiny_world)
    forget, retain = _batch(tiny_backend, 198), _batch(tiny_backend, 0)
    method = get_method("sra", SraConfig(reference_noise=1.0))
    with torch.no_grad():
        entropy_before, retain_before = _answer_entropy(model, forget), nll(model, retain).item()
        _, parts = method.loss(model, forget, retain)
    assert parts["sra_kl"] > 1.0 and parts["retain_nll"] == pytest.approx(retain_before, rel=1e-5)
    _train(method, model, forget, retain, steps=15, lr=5e-3)
    with torch.no_grad():
        entropy_after, retain_after = _answer_entropy(model, forget), nll(model, retain).item()
    assert entropy_after > entropy_before + 2.0  # memorized answers (near-zero entropy) became uncertain
    assert retain_after < retain_before + 0.5
    with pytest.raises(LetheError, match="retain set"):
        method.loss(model, forget, None)


def test_rmu_steers_forget_activations_to_its_direction_and_holds_retain(tiny_world, tiny_backend):
    torch.manual_seed(0)
    model = _peft(tiny_world)
    forget, retain = _batch(tiny_backend, 198), _batch(tiny_backend, 0)
    method = get_method("rmu", RmuConfig(layer=1, steering=5.0))
    direction = method._direction(model.config.hidden_size, "cpu")

    def alignment(batch) -> float:
        with torch.no_grad():
            states = hidden_states(model, batch, 1)
        return float(torch.nn.functional.cosine_similarity(states, direction.expand_as(states)).mean())

    with torch.no_grad():
        _, parts = method.loss(model, forget, retain)
    assert parts["rmu_retain"] == pytest.approx(0.0, abs=1e-6)  # LoRA B = 0: the model is its reference
    assert parts["rmu_forget"] > 0.5
    forget_before, retain_before = alignment(forget), alignment(retain)
    parts = _train(method, model, forget, retain, steps=20, lr=1e-2)
    assert alignment(forget) > forget_before + 0.3  # the forget tokens now point along the random direction
    assert abs(alignment(retain) - retain_before) < alignment(forget) - forget_before
    assert parts["rmu_retain"] < 0.1
    blocks = model.config.num_hidden_layers
    with pytest.raises(LetheError, match=f"only {blocks} blocks"):
        get_method("rmu", RmuConfig(layer=blocks + 1)).loss(model, forget, retain)


def test_hidden_states_run_only_the_blocks_below_the_layer(tiny_world, tiny_backend):
    from lethe.llm.layers import decoder_blocks

    model = _peft(tiny_world)
    batch = _batch(tiny_backend, 198)
    blocks = decoder_blocks(model)
    assert blocks is not None and len(blocks) == model.config.num_hidden_layers >= 2
    ran = []
    handles = [block.register_forward_hook(lambda *_, i=i: ran.append(i)) for i, block in enumerate(blocks)]
    try:
        states = hidden_states(model, batch, 1)
        assert ran == [0]  # the blocks above layer 1 did not run
        ran.clear()
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    finally:
        for handle in handles:
            handle.remove()
    mask = batch["attention_mask"].bool()
    assert torch.allclose(states, full.hidden_states[1][mask].float(), atol=1e-5)
    states.pow(2).sum().backward()  # the stopped forward keeps its graph: the adapters below get gradients
    first = [p.grad for n, p in model.named_parameters() if "lora_B" in n and ".layers.0." in n]  # A gets none: B = 0
    assert first and all(g is not None and g.abs().sum() > 0 for g in first)
    last = len(blocks)  # after the final norm: the full forward, the same numbers as output_hidden_states
    with torch.no_grad():
        assert torch.allclose(hidden_states(model, batch, last), full.hidden_states[last][mask].float(), atol=1e-5)
    # as the trainer runs it on a GPU: gradient checkpointing on, and the gradients still reach the adapters
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    model.zero_grad()
    hidden_states(model, batch, 1).pow(2).sum().backward()
    assert all(g is not None and g.abs().sum() > 0 for g in
               (p.grad for n, p in model.named_parameters() if "lora_B" in n and ".layers.0." in n))


def test_every_method_has_its_own_config_class_and_takes_only_that():
    from lethe.config import METHOD_CONFIGS

    assert {name: cls.config for name, cls in REGISTRY.items()} == METHOD_CONFIGS
    assert get_method("simnpo").p.gamma == 0.0  # defaults without a section
    with pytest.raises(LetheError, match="takes a NpoConfig"):
        get_method("npo", SraConfig())


def test_a_method_section_is_typed_when_params_load(params, tmp_path):
    import yaml

    from lethe.config import load_params
    from lethe.errors import ConfigError

    raw = yaml.safe_load(open("params.yaml"))
    assert params.unlearn.method_config("npo_gd").beta == raw["unlearn"]["methods"]["npo_gd"]["beta"]
    for section, message in (({"npo_gd": {"betta": 0.1}}, "betta: unknown key"),
                             ({"npo_gd": {"beta": -1}}, "greater than 0"),
                             ({"nppo": {}}, "unknown unlearning method 'nppo'"),
                             ({"ga": {"beta": 0.1}}, "beta: unknown key")):  # GA has no beta
        raw["unlearn"]["methods"] = section
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(ConfigError, match=message):
            load_params(path)


@pytest.mark.parametrize("kind", sorted(EXPECTED_TARGETS))
def test_hidden_states_stop_early_on_every_family(kind):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config_for(kind, 64, {"bos_token_id": 1, "eos_token_id": 2,
                                                                   "pad_token_id": 0})).eval()
    batch = {"input_ids": torch.randint(3, 64, (2, 7)), "attention_mask": torch.tensor([[1] * 7, [1] * 5 + [0] * 2])}
    with torch.no_grad():
        full = model(**batch, output_hidden_states=True).hidden_states[1][batch["attention_mask"].bool()]
        assert torch.allclose(hidden_states(model, batch, 1), full.float(), atol=1e-5)
