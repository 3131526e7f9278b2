"""Unlearning: losses, the LoRA trainer, SAGE sanitization."""
