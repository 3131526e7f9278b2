"""The checks that run before any work: architecture, tokenizer, memory; and dtype choice per device."""

from __future__ import annotations

import json

import pytest
import torch

from lethe.errors import LetheError, ModelNotFoundError
from lethe.llm.loading import load_tokenizer, parameter_count, preflight, require_model_dir, resolve_dtype
from tests.architectures import build_tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    return build_tiny_model("llama", tmp_path_factory.mktemp("llama"), chat=False)


def test_parameter_count_is_read_from_the_safetensors_headers(tiny_llama):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    # tied embeddings are stored once, as model.num_parameters() counts them
    assert parameter_count(tiny_llama) == model.num_parameters()


def test_unknown_architecture_is_one_clear_error(tiny_llama, tmp_path):
    folder = tmp_path / "strange"
    folder.mkdir()
    config = json.loads((tiny_llama / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "zorblax"}))
    (folder / "model.safetensors").write_bytes((tiny_llama / "model.safetensors").read_bytes())
    with pytest.raises(ModelNotFoundError, match=r"is a 'zorblax' model, an architecture transformers .* does not"):
        require_model_dir(folder)


def test_a_model_without_a_causal_lm_head_is_refused(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                       image_size=8, patch_size=4)).save_pretrained(tmp_path)
    with pytest.raises(ModelNotFoundError, match="'vit' model, which has no causal-LM head"):
        require_model_dir(tmp_path)


def test_a_tokenizer_without_pad_uses_eos_and_without_either_is_refused(tmp_path):
    tokenizer = tiny_tokenizer(chat=False)
    tokenizer.pad_token = None
    tokenizer.save_pretrained(tmp_path / "no-pad")
    assert load_tokenizer(tmp_path / "no-pad").pad_token == tokenizer.eos_token
    tokenizer.eos_token = None
    tokenizer.save_pretrained(tmp_path / "nothing")
    with pytest.raises(ModelNotFoundError, match="neither a pad nor an end-of-sequence token"):
        load_tokenizer(tmp_path / "nothing")


def test_a_model_too_large_for_the_memory_is_refused_before_loading(tiny_llama):
    assert preflight(tiny_llama, "cpu", "auto", None)["weight_gb"] > 0
    with pytest.raises(LetheError, match=r"needs 0\.\d+ GiB for its weights in float32 on cpu, more than 80% of"):
        preflight(tiny_llama, "cpu", "auto", max_memory_gb=1e-6)


def test_dtype_defaults_to_bfloat16_on_cuda_and_float32_on_cpu():
    assert resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_dtype(None, torch.device("cpu")) == torch.float32
    assert resolve_dtype("float16", torch.device("cpu")) == torch.float16
