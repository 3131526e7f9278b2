"""Batched sampling (10 samples x 16 prompts in batched generate calls) vs one prompt at a time.

Usage: python bench/sampling_throughput.py [--size default]   -> bench/results/sampling_throughput.json
"""

from __future__ import annotations

import argparse
import time

from common import built_world, write_result

from lethe.config import load_params
from lethe.data import author_qa
from lethe.llm.backend import Backend


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="default")
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--prompts", type=int, default=16)
    args = parser.parse_args()
    params = load_params()
    record = built_world(params.world.output_dir, args.size)
    backend = Backend.load(record["model_path"], "cpu", batch_size=args.samples * args.prompts)
    questions = [author_qa(a["index"])[i % 20].question for i, a in enumerate(record["authors"][: args.prompts])]
    kwargs = dict(temperature=1.0, top_p=0.95, max_new_tokens=64)
    backend.sample(questions[:2], 2, seed=0, **kwargs)  # warm-up

    start = time.perf_counter()
    batched = backend.sample(questions, args.samples, seed=0, **kwargs)
    batched_s = time.perf_counter() - start
    start = time.perf_counter()
    per_prompt = [backend.sample([q], args.samples, seed=0, **kwargs) for q in questions]
    per_prompt_s = time.perf_counter() - start
    start = time.perf_counter()
    sequential = [backend.sample([q], 1, seed=s, **kwargs) for q in questions for s in range(args.samples)]
    sequential_s = time.perf_counter() - start
    n = args.samples * args.prompts
    assert len(batched) == len(per_prompt) == args.prompts and len(sequential) == n
    write_result("sampling_throughput", {
        "size": args.size, "samples": args.samples, "prompts": args.prompts, "max_new_tokens": 64,
        "batched_seconds": batched_s, "one_prompt_at_a_time_seconds": per_prompt_s,
        "one_sample_at_a_time_seconds": sequential_s,
        "speedup_vs_one_prompt_at_a_time": per_prompt_s / batched_s,
        "speedup_vs_one_sample_at_a_time": sequential_s / batched_s,
        "batched_samples_per_second": n / batched_s,
    })


if __name__ == "__main__":
    main()
