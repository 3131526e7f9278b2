"""Why GA+GD / GA+KL on the gold forget set do nothing in a short run: the gradient balance at step 0.

Usage: python bench/gradient_balance.py --forget gold=PATH --forget mage=PATH --retain PATH
  -> bench/results/gradient_balance.json

For each forget set, on a fresh LoRA adapter of the default world model: the answer-token NLL of
the forget and retain sets, the norms of their gradients with respect to the adapter, and the
cosine between them. A forget set the model reproduces verbatim (NLL near 0) has a vanishing
ascent gradient (it scales with 1 - p of the answer tokens); added to a retain gradient that is
orders of magnitude larger, the sum is the retain gradient, and Adam's per-coordinate scaling
then spends the whole step on the retain term.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import built_world, write_result

from lethe.config import load_params
from lethe.fileio import load_qa_file
from lethe.llm.batching import collate_qa
from lethe.llm.format import PromptFormat
from lethe.unlearn.methods import nll
from lethe.unlearn.targets import resolve_targets
from lethe.unlearn.trainer import load_base


def gradient(model, pairs, fmt, pad: int, rows: int) -> tuple[float, torch.Tensor]:
    """Mean answer NLL over the first `rows` pairs and its gradient w.r.t. the trainable parameters."""
    model.zero_grad(set_to_none=True)
    batch = collate_qa([fmt.encode(q, a) for q, a in pairs[:rows]], pad)
    loss = nll(model, batch)
    loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad and p.grad is not None])
    return loss.item(), grads


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--forget", action="append", required=True, help="label=path of a forget set (JSONL)")
    parser.add_argument("--retain", required=True, help="the neighbor set (JSONL)")
    parser.add_argument("--rows", type=int, default=32)
    args = parser.parse_args()
    from peft import LoraConfig, get_peft_model

    params = load_params()
    record = built_world(params.world.output_dir)
    torch.manual_seed(0)
    base, tokenizer = load_base(record["model_path"], "cpu")
    lora = params.unlearn.lora
    model = get_peft_model(base, LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                                            target_modules=resolve_targets(base, lora.target_modules),
                                            task_type="CAUSAL_LM"))
    fmt, pad = PromptFormat(tokenizer), tokenizer.pad_token_id
    retain_nll, retain_grad = gradient(model, load_qa_file(Path(args.retain), "retain"), fmt, pad, args.rows)
    rows = []
    for item in args.forget:
        label, path = item.split("=", 1)
        forget_nll, forget_grad = gradient(model, load_qa_file(Path(path), label), fmt, pad, args.rows)
        ratio = (forget_grad.norm() / retain_grad.norm()).item()
        cosine = torch.nn.functional.cosine_similarity(forget_grad, retain_grad, dim=0).item()
        # GA+GD's step direction: -grad(forget) + grad(retain); how much of it is the forget part
        combined = -forget_grad + retain_grad
        forget_share = (forget_grad.norm() ** 2 / (forget_grad.norm() ** 2 + retain_grad.norm() ** 2)).item()
        rows.append({"forget_set": label, "forget_nll": forget_nll, "retain_nll": retain_nll,
                     "forget_grad_norm": forget_grad.norm().item(), "retain_grad_norm": retain_grad.norm().item(),
                     "forget_to_retain_grad_ratio": ratio, "cosine": cosine,
                     "forget_share_of_ga_gd_gradient": forget_share, "ga_gd_grad_norm": combined.norm().item()})
        print(json.dumps(rows[-1]), flush=True)
    write_result("gradient_balance", {"rows_per_set": args.rows, "retain_set": args.retain, "sets": rows})


if __name__ == "__main__":
    main()
