"""The mean of several adapters' weight updates, written as one exact adapter."""

import json

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from lethe.errors import LetheError
from lethe.unlearn.averaging import CONFIG, mean_update, write_mean_update

TINY = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                   num_key_value_heads=2, max_position_embeddings=32)


def base_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(TINY).eval()


def random_adapter(folder, seed: int, rank: int = 4):
    """A LoRA adapter on the attention with the MLP's down projection trained in full, its weights random."""
    model = get_peft_model(base_model(), LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=["q_proj", "v_proj"],
                                                    modules_to_save=["mlp.down_proj"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if weight.requires_grad:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.1)
    model.save_pretrained(folder)
    return folder


def merged_weights(adapter) -> dict[str, torch.Tensor]:
    merged = PeftModel.from_pretrained(base_model(), adapter).merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}


def test_the_written_adapter_is_the_exact_mean_of_the_updates(tmp_path):
    folders = [random_adapter(tmp_path / f"a{seed}", seed) for seed in (1, 2, 3)]
    singles = [merged_weights(f) for f in folders]
    mean = merged_weights(write_mean_update(folders, tmp_path / "mean"))
    for key in mean:
        expected = sum(s[key] for s in singles) / 3
        assert torch.allclose(mean[key], expected, atol=1e-6), key
    changed = [k for k in mean if not torch.equal(singles[0][k], singles[1][k])]
    assert any("q_proj" in k for k in changed) and any("down_proj" in k for k in changed)  # both kinds averaged
    config = json.loads((tmp_path / "mean" / CONFIG).read_text())
    assert (config["r"], config["lora_alpha"]) == (12, 24)  # the scale alpha / r of each adapter, unchanged


def test_an_adapter_may_be_overwritten_by_the_mean_it_takes_part_in(tmp_path):
    folders = [random_adapter(tmp_path / f"a{seed}", seed) for seed in (1, 2)]
    expected = mean_update(folders)[0]
    write_mean_update(folders, folders[1])
    assert all(torch.equal(expected[k], v) for k, v in mean_update([folders[1]])[0].items())


def test_adapters_of_different_runs_are_refused(tmp_path):
    narrow, wide = random_adapter(tmp_path / "narrow", 1, rank=4), random_adapter(tmp_path / "wide", 2, rank=8)
    with pytest.raises(LetheError, match="differ in rank"):
        mean_update([narrow, wide])
