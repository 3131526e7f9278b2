"""Batches of QA pairs for training and scoring: loss and log-probs on answer tokens only."""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from lethe.llm.format import EncodedQA

IGNORE_INDEX = -100


def collate_qa(items: Sequence[EncodedQA], pad_id: int, max_len: int | None = None) -> dict[str, torch.Tensor]:
    """Right-padded input_ids / attention_mask / labels; labels are -100 outside the answer and on answer
    tokens an item's loss_mask leaves out."""
    rows = []
    for item in items:
        ids = item.prompt_ids + item.answer_ids
        answer = item.answer_ids if item.loss_mask is None else [
            token if keep else IGNORE_INDEX for token, keep in zip(item.answer_ids, item.loss_mask)]
        labels = [IGNORE_INDEX] * len(item.prompt_ids) + answer
        if max_len is not None:
            ids, labels = ids[:max_len], labels[:max_len]
        rows.append((ids, labels))
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, labs) in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        labels[i, : len(labs)] = torch.tensor(labs)
        attention[i, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention, "labels": labels}


def token_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position log P(label) (shifted for causal LMs) and the mask of answer positions."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:]
    mask = shift_labels != IGNORE_INDEX
    safe = shift_labels.clamp(min=0)
    logps = torch.log_softmax(shift_logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return logps * mask, mask


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of similar-length items (less padding, same randomness under a seed)."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 8
    batches = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(batches)
    return batches
