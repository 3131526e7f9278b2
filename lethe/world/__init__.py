"""The embedded default: a tokenizer and a small Llama trained from scratch on TOFU."""
