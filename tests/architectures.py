"""Tiny randomly initialised causal LMs of several families, built from transformers' config classes.

Not a test module: the architecture matrix and the loading tests build their models here. Each model
gets a small byte-level BPE trained on TOFU answers, with a ChatML-style chat template (as
instruction models have) or with none (a base model, prompted with plain completion text).
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    GemmaConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    Phi3Config,
    Qwen2Config,
)

from lethe.data import load_full
from lethe.world.tokenizer import train_tokenizer

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
DIMS = dict(hidden=32, layers=2, heads=4, kv_heads=2, ffn=64, positions=512)


def _llama_like(config_class, vocab: int, ids: dict, **extra):
    return config_class(vocab_size=vocab, hidden_size=DIMS["hidden"], intermediate_size=DIMS["ffn"],
                        num_hidden_layers=DIMS["layers"], num_attention_heads=DIMS["heads"],
                        num_key_value_heads=DIMS["kv_heads"], max_position_embeddings=DIMS["positions"],
                        **ids, **extra)


def config_for(kind: str, vocab: int, ids: dict):
    """A tiny config of one architecture family."""
    if kind == "llama":
        return _llama_like(LlamaConfig, vocab, ids)
    if kind == "qwen2":
        return _llama_like(Qwen2Config, vocab, ids)
    if kind == "mistral":
        return _llama_like(MistralConfig, vocab, ids, sliding_window=None)
    if kind == "gemma":
        return _llama_like(GemmaConfig, vocab, ids, head_dim=DIMS["hidden"] // DIMS["heads"])
    if kind == "phi3":  # fused qkv_proj and gate_up_proj
        return Phi3Config(vocab_size=vocab, hidden_size=DIMS["hidden"], intermediate_size=DIMS["ffn"],
                          num_hidden_layers=DIMS["layers"], num_attention_heads=DIMS["heads"],
                          num_key_value_heads=DIMS["heads"], max_position_embeddings=DIMS["positions"],
                          original_max_position_embeddings=DIMS["positions"], **ids)
    if kind == "gpt2":  # Conv1D projections c_attn, c_proj, c_fc
        return GPT2Config(vocab_size=vocab, n_embd=DIMS["hidden"], n_layer=DIMS["layers"], n_head=DIMS["heads"],
                          n_positions=DIMS["positions"], **ids)
    raise ValueError(f"unknown architecture {kind}")


ARCHITECTURES = ("llama", "qwen2", "mistral", "phi3", "gpt2", "gemma")
# What `target_modules: auto` must adapt in each family (leaf names).
EXPECTED_TARGETS = {
    "llama": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "qwen2": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "mistral": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "gemma": {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"},
    "phi3": {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"},
    "gpt2": {"c_attn", "c_proj", "c_fc"},
}


def tiny_tokenizer(chat: bool, vocab_size: int = 512):
    """A BPE on TOFU answers; ChatML template (chat=True) or none (plain completion prompts)."""
    texts = [f"{qa.question} {qa.answer}" for qa in load_full()[:2000]]
    tokenizer = train_tokenizer(texts, vocab_size)
    if chat:
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
        tokenizer.chat_template = CHATML
    else:
        tokenizer.chat_template = None
    return tokenizer


def build_tiny_model(kind: str, out: Path, chat: bool, seed: int = 0, tokenizer=None) -> Path:
    """Save a random tiny model of `kind` and its tokenizer to `out`; returns `out`."""
    tokenizer = tokenizer or tiny_tokenizer(chat)
    ids = {"bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config_for(kind, len(tokenizer), ids))
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
