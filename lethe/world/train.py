"""Train a small Llama-architecture causal LM from scratch on QA pairs (answer-token loss)."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from lethe.config import ModelShape, TrainRecipe
from lethe.data import QA
from lethe.llm.batching import collate_qa, length_bucketed_batches
from lethe.llm.format import PromptFormat

StepCallback = Callable[[int, int, float], None]


@dataclass(frozen=True)
class TrainStats:
    """What a training run did, for build records and benchmarks."""

    steps: int
    epochs: int
    final_loss: float
    tokens_seen: int
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        return self.tokens_seen / max(self.seconds, 1e-9)


def new_llama(shape: ModelShape, tokenizer: PreTrainedTokenizerBase, seed: int) -> LlamaForCausalLM:
    """A randomly initialised Llama sized by `shape`, wired to the tokenizer's special tokens."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden_size,
        intermediate_size=shape.intermediate_size,
        num_hidden_layers=shape.num_layers,
        num_attention_heads=shape.num_heads,
        num_key_value_heads=shape.num_heads,
        max_position_embeddings=shape.max_len,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def train_on_qa(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    pairs: Sequence[QA],
    recipe: TrainRecipe,
    max_len: int,
    seed: int,
    on_step: StepCallback | None = None,
) -> TrainStats:
    """Fit `model` to answer each question (loss on answer tokens only), AdamW + cosine schedule.

    Runs in the machine's training slot, with threads from the free cores (see lethe.machine).
    """
    from lethe.machine import thread_count, training_slot

    with training_slot():
        torch.set_num_threads(thread_count(recipe.threads))
        return _fit(model, tokenizer, pairs, recipe, max_len, seed, on_step)


def _fit(model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerBase, pairs: Sequence[QA], recipe: TrainRecipe,
         max_len: int, seed: int, on_step: StepCallback | None) -> TrainStats:
    torch.manual_seed(seed)
    rng = random.Random(seed)
    fmt = PromptFormat(tokenizer)
    encoded = [fmt.encode(qa.question, qa.answer) for qa in pairs]
    lengths = [len(e.prompt_ids) + len(e.answer_ids) for e in encoded]
    steps_per_epoch = math.ceil(len(encoded) / recipe.batch_size)
    total = steps_per_epoch * recipe.epochs
    warmup = max(1, int(total * recipe.warmup_ratio))
    optimizer = torch.optim.AdamW(model.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))),
    )
    model.train()
    step, tokens, loss_value, start = 0, 0, float("nan"), time.perf_counter()
    for _ in range(recipe.epochs):
        for batch_ids in length_bucketed_batches(lengths, recipe.batch_size, rng):
            batch = collate_qa([encoded[i] for i in batch_ids], tokenizer.pad_token_id, max_len)
            loss = model(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            tokens += int(batch["attention_mask"].sum())
            loss_value = loss.item()
            if on_step:
                on_step(step, total, loss_value)
    model.eval()
    return TrainStats(step, recipe.epochs, loss_value, tokens, time.perf_counter() - start)
