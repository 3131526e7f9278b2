"""Neuron reset on tiny random models: which neurons, what changes, what the reference still sees."""

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Phi3Config

from lethe.errors import LetheError
from lethe.llm.format import EncodedQA
from lethe.unlearn.neuron_reset import attribution, mlp_blocks, mlp_module_names, reset_neurons

DIMS = dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2)


def llama():
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(LlamaConfig(**DIMS, num_key_value_heads=2))


def gpt2():
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2))


def rows(n: int, seed: int) -> list[EncodedQA]:
    """Encoded QA rows: 4 prompt tokens then 4 answer tokens."""
    generator = torch.Generator().manual_seed(seed)
    return [EncodedQA(ids[:4], ids[4:]) for ids in (torch.randint(1, 64, (8,), generator=generator).tolist()
                                                    for _ in range(n))]


def test_mlp_blocks_are_found_by_structure_in_llama_and_gpt2():
    assert mlp_module_names(llama()) == ["mlp.down_proj", "mlp.gate_proj", "mlp.up_proj"]
    blocks = mlp_blocks(llama())
    assert len(blocks) == 2 and blocks[0].leaves == ["gate_proj", "up_proj", "down_proj"] and blocks[0].width == 32
    gpt = mlp_blocks(gpt2())
    assert len(gpt) == 2 and gpt[0].leaves == ["c_fc", "c_proj"] and gpt[0].width == 64  # 4 x n_embd
    assert mlp_module_names(gpt2()) == ["mlp.c_fc", "mlp.c_proj"]  # never the attention's c_proj


def test_a_fused_mlp_is_a_clear_error():
    torch.manual_seed(0)
    phi3 = AutoModelForCausalLM.from_config(Phi3Config(**DIMS, num_key_value_heads=2, pad_token_id=0,
                                                       max_position_embeddings=64,
                                                       original_max_position_embeddings=64))
    with pytest.raises(LetheError, match="gate_up_proj"):
        mlp_blocks(phi3)


def test_attribution_is_per_row_and_zero_for_a_dead_neuron():
    model = llama()
    blocks = mlp_blocks(model)
    with torch.no_grad():
        blocks[0].inputs[0].weight[5] = 0.0  # gate row 5: silu(0) = 0, so neuron 5 never fires
    scores = attribution(model, blocks, rows(6, 1), pad_id=0, batch_size=4)
    assert [s.shape for s in scores] == [torch.Size([32])] * 2
    assert scores[0][5] == 0 and all((s >= 0).all() for s in scores) and scores[1].sum() > 0
    doubled = attribution(model, blocks, rows(6, 1) * 2, pad_id=0, batch_size=4)
    assert torch.allclose(scores[0], doubled[0], rtol=1e-4)  # a mean per answer token
    assert not any(p.grad is not None for p in model.parameters())  # no gradient left behind


def test_reset_picks_the_most_forget_specific_neurons_and_silences_them():
    model = llama()
    blocks = mlp_blocks(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    forget = [torch.ones(32) for _ in blocks]
    retain = [torch.ones(32) for _ in blocks]
    forget[0][[3, 7]] = 10.0  # layer 0: neurons 3 and 7 matter for the forget rows only
    retain[1][:4] = 0.01  # layer 1: neurons 0-3 hardly matter for the retain rows
    chosen = reset_neurons(blocks, forget, retain, fraction=0.1, seed=0)  # round(3.2) = 3 per layer
    assert len(chosen[0]) == 3 and {3, 7} <= set(chosen[0])
    assert len(chosen[1]) == 3 and set(chosen[1]) <= {0, 1, 2, 3}
    state = model.state_dict()
    down = state["model.layers.0.mlp.down_proj.weight"]
    assert (down[:, chosen[0]] == 0).all()
    kept = [i for i in range(32) if i not in chosen[0]]
    assert torch.equal(down[:, kept], before["model.layers.0.mlp.down_proj.weight"][:, kept])
    gate = state["model.layers.0.mlp.gate_proj.weight"]
    assert not torch.equal(gate[chosen[0]], before["model.layers.0.mlp.gate_proj.weight"][chosen[0]])
    assert torch.equal(state["model.layers.0.self_attn.q_proj.weight"], before["model.layers.0.self_attn.q_proj.weight"])


def test_reset_on_gpt2_conv1d_zeroes_the_output_rows():
    model = gpt2()
    blocks = mlp_blocks(model)
    chosen = reset_neurons(blocks, [torch.rand(64) for _ in blocks], [torch.ones(64) for _ in blocks], 0.25, 0)
    assert (model.transformer.h[0].mlp.c_proj.weight[chosen[0]] == 0).all()  # Conv1D: (in, out)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])
def test_reset_fraction_out_of_range_is_an_error(fraction):
    blocks = mlp_blocks(llama())
    with pytest.raises(LetheError, match="between 0 and 1"):
        reset_neurons(blocks, [torch.ones(32)] * 2, [torch.ones(32)] * 2, fraction, 0)


def test_inside_peft_the_reset_lives_in_the_adapter_and_the_reference_is_untouched():
    model = llama()
    x = torch.randint(0, 64, (2, 6))
    original = model(input_ids=x).logits.detach().clone()
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], modules_to_save=mlp_module_names(model)))
    blocks = mlp_blocks(peft_model)
    reset_neurons(blocks, [torch.rand(32) for _ in blocks], [torch.ones(32) for _ in blocks], 0.25, 0)
    changed = peft_model(input_ids=x).logits.detach()
    with peft_model.disable_adapter():  # what NPO and KL use as their reference
        reference = peft_model(input_ids=x).logits.detach()
    assert not torch.allclose(changed, original) and torch.equal(reference, original)
    merged = peft_model.merge_and_unload()
    assert torch.allclose(merged(input_ids=x).logits, changed, atol=1e-6)
