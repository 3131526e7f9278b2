"""Sizing on paper: memory and time of one request for 1B, 3B and 7B models on one GPU.

Measured here: the per-step cost of LoRA unlearning and of batched decoding on the default world
model (CPU), which calibrates the FLOP model below against a real step. Computed: the same
workload (params.yaml's steps, batches and generation counts) for Llama-3.2-1B, Llama-3.2-3B and
Mistral-7B shapes, in bf16 with gradient checkpointing, on an H100 (80 GB). GPU throughput is an
assumption (stated in the output), not a measurement: no GPU was lent while this was written.

    python bench/sizing.py [--steps 6]
"""

from __future__ import annotations

import argparse
import shutil
import time

from common import ROOT, built_world, write_result

from lethe.config import load_params
from lethe.data import author_qa

# Public shapes (config.json of each model family).
MODELS = {
    "1B (Llama-3.2-1B)": dict(params=1.24e9, layers=16, hidden=2048, ffn=8192, heads=32, kv_heads=8, vocab=128256),
    "3B (Llama-3.2-3B)": dict(params=3.21e9, layers=28, hidden=3072, ffn=8192, heads=24, kv_heads=8, vocab=128256),
    "7B (Mistral-7B)": dict(params=7.24e9, layers=32, hidden=4096, ffn=14336, heads=32, kv_heads=8, vocab=32768),
}
ATTACK_LORA_RANK = 8  # the LoRA relearning attack measured on the default world (README, the audit)
GPU = dict(name="H100 SXM 80GB", memory_gb=80, bf16_flops=989e12, hbm_bytes_per_s=3.35e12,
           assumed_train_mfu=0.25, assumed_decode_bandwidth_use=0.6)


def lora_params(m: dict, r: int) -> int:
    """LoRA weights on every attention and MLP projection (target_modules: auto)."""
    h, f, kv = m["hidden"], m["ffn"], m["hidden"] * m["kv_heads"] // m["heads"]
    per_layer = r * ((h + h) * 2 + (h + kv) * 2 + (h + f) * 2 + (f + h))
    return per_layer * m["layers"]


def train_step_flops(n_params: float, tokens: int, forget_tokens: int, checkpointing: bool) -> float:
    """Forward 2N + activation-gradient backward 2N per token (+2N recompute), + NPO's reference forward."""
    per_token = 2 + 2 + (2 if checkpointing else 0)
    return n_params * (per_token * tokens + 2 * forget_tokens)


def measure_cpu(steps: int) -> dict:
    """Seconds per LoRA step and per decoded token batch on the default world model (this CPU)."""
    from lethe.llm.backend import Backend
    from lethe.unlearn.trainer import unlearn

    record = built_world("artifacts/world")
    params = load_params()

    forget = [(q.question, q.answer) for q in author_qa(198)]
    retain = [(q.question, q.answer) for q in author_qa(0) + author_qa(1)]
    cfg = params.unlearn.model_copy(update={"max_steps": steps, "eval_every": 0, "checkpoint_every": steps + 1,
                                            "gradient_checkpointing": False})
    out = ROOT / "artifacts/bench/sizing"
    shutil.rmtree(out, ignore_errors=True)
    result = unlearn(record["model_path"], forget, retain, cfg, out, "npo_gd", "cpu")
    backend = Backend.load(record["model_path"], "cpu", 32)
    n = sum(p.numel() for p in backend.model.parameters())
    enc = [backend.format.encode(q, a) for q, a in forget + retain]
    seq = sum(len(e.prompt_ids) + len(e.answer_ids) for e in enc) / len(enc)
    batch = cfg.batch_size
    flops = train_step_flops(n, int(2 * batch * seq), int(batch * seq), checkpointing=False)
    questions = [q for q, _ in forget[:32]]
    started = time.perf_counter()
    backend.greedy(questions, max_new_tokens=32)
    decode_seconds = time.perf_counter() - started
    return {"model_params": n, "mean_sequence_tokens": seq, "batch_size": batch,
            "seconds_per_train_step": result["seconds_per_step"], "train_flops_per_step": flops,
            "achieved_train_flops_per_s": flops / result["seconds_per_step"],
            "decode_seconds_per_token_step_batch32": decode_seconds / 32}


def size(name: str, m: dict, params, seq: float, calls: dict) -> dict:
    """Memory (GiB) and time (s) of one request for one model shape on GPU, bf16 + checkpointing."""
    n, r, batch = m["params"], params.unlearn.lora.r, params.unlearn.batch_size
    tokens, gib = int(2 * batch * seq), 2**30
    lora = lora_params(m, r)
    weights = 2 * n
    lora_state = 16 * lora  # fp32 weight, gradient, Adam m and v
    checkpoints = m["layers"] * tokens * m["hidden"] * 2
    one_layer = tokens * (16 * m["hidden"] + 3 * m["ffn"]) * 2
    logits = tokens * m["vocab"] * 4 * 2  # fp32 logits and their log-softmax
    train_gib = (weights + lora_state + checkpoints + one_layer + logits) / gib
    # The audit loads float32 (it merges, rounds and fine-tunes) and attacks that model in place (the
    # weights before wait in host memory): the full-parameter attack holds weights + gradients (4 bytes
    # each) + AdamW's two moments (8 bytes) per parameter; the LoRA attack (audit.relearn_lora_rank,
    # rank 8 here) the float32 weights and 16 bytes per adapter parameter. Activations are not counted.
    relearn_gib = 16 * n / gib
    relearn_lora_gib = (4 * n + 16 * lora_params(m, ATTACK_LORA_RANK)) / gib
    step_s = train_step_flops(n, tokens, int(batch * seq), True) / (GPU["bf16_flops"] * GPU["assumed_train_mfu"])
    decode_step_s = weights / (GPU["hbm_bytes_per_s"] * GPU["assumed_decode_bandwidth_use"])
    decode_s = sum(c["batches"] * c["new_tokens"] for c in calls.values()) * decode_step_s
    train_s = params.unlearn.max_steps * step_s
    relearn_s = params.audit.relearn_steps * step_s * 3  # full-parameter: weight gradients and Adam too
    return {"model": name, "lora_params": lora, "weights_gib": weights / gib, "train_peak_gib": train_gib,
            "audit_relearn_peak_gib": relearn_gib, "audit_relearn_lora_peak_gib": relearn_lora_gib,
            "fits_80gb_train": train_gib < GPU["memory_gb"] * 0.9,
            "fits_80gb_relearn_attack": relearn_gib < GPU["memory_gb"] * 0.9,
            "fits_80gb_relearn_lora_attack": relearn_lora_gib < GPU["memory_gb"] * 0.9,
            "seconds_per_train_step": step_s, "unlearn_seconds_at_max_steps": train_s,
            "decode_seconds": decode_s, "relearn_attack_seconds": relearn_s,
            "request_seconds": train_s + decode_s + relearn_s}


def generation_calls(params) -> dict:
    """Generated sequences of one request, batched by backend.batch_size (upper bounds from params)."""
    b = params.backend.batch_size
    ev = params.evaluate
    eval_rows = 2 * (ev.retain_rows + 2 * ev.general_rows + ev.neighbor_rows + 40 * 6)  # before + after, 5 probes
    audit_rows = 3 * (len(params.elicit.prompts) * params.audit.reelicit_samples + 60)
    return {"mining": {"batches": params.expand.max_model_calls / b, "new_tokens": params.elicit.max_new_tokens},
            "evaluation": {"batches": eval_rows / b, "new_tokens": ev.max_new_tokens},
            "audit": {"batches": audit_rows / b, "new_tokens": params.audit.max_new_tokens}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    params = load_params()
    cpu = measure_cpu(args.steps)
    calls = generation_calls(params)
    seq = 256  # real QA prompts + answers of larger models' tokenizers: a generous bound
    rows = [size(name, m, params, seq, calls) for name, m in MODELS.items()]
    write_result("sizing", {"measured_cpu_default_world": cpu, "gpu_assumptions": GPU, "sequence_tokens": seq,
                            "lora_r": params.unlearn.lora.r, "batch_size": params.unlearn.batch_size,
                            "max_steps": params.unlearn.max_steps, "generation_calls": calls, "models": rows})
    for row in rows:
        print(f"{row['model']}: train peak {row['train_peak_gib']:.1f} GiB, relearn attack {row['audit_relearn_peak_gib']:.1f}"
              f" GiB (LoRA {row['audit_relearn_lora_peak_gib']:.1f} GiB), {row['seconds_per_train_step']:.2f} s/step, request ~{row['request_seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
