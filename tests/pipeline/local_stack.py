"""Helpers shared by the integration tests that start the local stack (not tests themselves)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from lethe.ops.stack import free_port as _free_port
from lethe.ops.stack import s3_client


def free_port() -> int:
    """A port free on 127.0.0.1 now; pick it just before the server starts."""
    return _free_port("127.0.0.1")


def relax_for_pipeline_tests(raw: dict) -> dict:
    """The gate and budget of the integration tests (a params.yaml mapping, changed in place).

    The pipeline, not the method, is under test there. On the tiny world (a weak miner) 80 steps of
    NPO+GD took gold ROUGE 0.99 -> 0.43 while re-elicitation still found 0.46 of the strong memories
    and the relearning attack (then at lr 1e-3) brought gold back to 0.45 (never-trained: 0.06): no method here passes
    the real audit, so these tests relax relearning and held-out recall (and its probe count: the tiny
    world's Nikolai has three, at the bound), and re-elicitation to 0.65 (a do-nothing adapter measured
    0.80; tests/ops/test_gate.py holds the real thresholds).

    Training: 120 steps, with the model's own answers to every elicitation prompt about the other authors
    among the retain rows (unlearn.entity_retain_rows 60: four authors, 15 prompts). Stop 63 measured the
    requests of these tests with `bench/audit.py --size tiny --split forget01 --mode chained` (and `--mode
    batch`) at world.seed 1234 and 7 (bench/results/audit_forget01_*_tf*_*.json, mining with the title fix).
    At 80 steps without those rows the second request lost the other authors' recognition at seed 7 (Jaime
    Vasquez 0.47 -> 0.13) and utility at seed 1234 (0.88x); fewer steps or the adaptive budget left the first
    request's forget quality under its value before (seed 1234). With them every request passed at both
    seeds: gold 0.15-0.38x, re-elicitation 0.25 at most, recognition 0.93x at worst. What the requests keep
    still varies with the world's seed and the machine: utility 0.867x at worst (the second chained request,
    seed 1234), its weakest part 0.74x, the weakest other author 0.75 (the batch, seed 1234), so these tests
    gate utility at 0.75x, its parts at 0.6x and entity retention at 0.5. Recognition keeps the real bound.
    """
    raw["unlearn"].update(forget_nll_bound=100.0, max_steps=120, eval_every=0, entity_retain_rows=60)
    raw["audit"].update(relearn_attacks=1)  # relearning is not gated here: one attack, not three, is measured
    raw["gate"].update({"max_forget_ratio": 0.7, "max_heldout_ratio": 1.0, "min_heldout_probes": 1,
                        "max_reelicit_excess": 0.65,
                        "max_relearn_gap": 1.0, "max_relearn_share": 100.0, "max_relearn_recovery": 1.0,
                        "min_utility_ratio": 0.75, "min_utility_part_ratio": 0.6, "min_entity_retention": 0.5})
    return raw


def s3_keys(endpoint: str, bucket: str) -> list[str]:
    """Every key of a bucket on the local S3 server (all pages)."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def lethe_json(params: Path, *args: str, timeout: float = 900) -> dict:
    """`lethe <args> --params <params> --json` as a user runs it (a subprocess): asserts it succeeded
    without a traceback and returns the one JSON object it printed."""
    done = subprocess.run([sys.executable, "-m", "lethe", *args, "--params", str(params), "--json"],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (args, done.stdout[-1000:], done.stderr[-3000:])
    return json.loads(done.stdout)


__all__ = ["free_port", "lethe_json", "relax_for_pipeline_tests", "s3_client", "s3_keys"]
