"""Capacity on paper: 1,000 requests a month on 3 target models, GPU-hours and nightly wall time.

Nothing is run here. Inputs, both written by other benchmarks:
- bench/results/sizing.json: one request's GPU seconds for 1B, 3B and 7B shapes on one H100
  (computed from a measured CPU step and an assumed GPU efficiency, see bench/sizing.py);
- bench/results/compliance_fanout.json: the measured shares of a compliance run's phases on this
  machine (mining ahead, the serial requests, the re-audit per entity), 1 worker.

Model: requests arrive evenly, one model of each size, processed by the nightly compliance run.
Per night and model: mining ahead (fans out over the workers), the model's requests one after
another (serial; different models run in parallel), then the re-audit of every entity forgotten on
that model so far (fans out). One worker = one GPU. The phase shares measured on the CPU tiny world
are assumed to hold on a GPU: an assumption, stated in the output.

    python bench/capacity.py
"""

from __future__ import annotations

import json

from common import RESULTS, write_result

REQUESTS_PER_MONTH = 1000
NIGHTS_PER_MONTH = 30
WORKERS = (1, 2, 4, 8)
NIGHT_HOURS = 8.0  # the window a nightly run should fit in


def phase_shares(fanout: dict) -> dict[str, float]:
    """Per request, the share of its cost spent mining and in the serial part, and one entity's
    re-audit as a share of one request, from the 1-worker side of the fan-out benchmark."""
    side = fanout["sides"]["1_worker"]
    requests, entities = len(side["outcomes"]), len(side["audit_rows"])
    mining, serial = side["mining_ahead_seconds"] / requests, side["requests_seconds"] / requests
    return {"mining": mining / (mining + serial), "serial": serial / (mining + serial),
            "audit_per_entity": side["audit_seconds"] / entities / (mining + serial)}


def night(request_seconds: float, shares: dict, requests: float, entities: float, workers: int) -> dict:
    """One model's nightly run: seconds of each phase with `workers` GPUs for the fan-out phases."""
    mining = requests * shares["mining"] * request_seconds / workers
    serial = requests * shares["serial"] * request_seconds
    audit = entities * shares["audit_per_entity"] * request_seconds / workers
    gpu = requests * request_seconds + entities * shares["audit_per_entity"] * request_seconds
    return {"mining_s": mining, "serial_s": serial, "audit_s": audit, "wall_s": mining + serial + audit, "gpu_s": gpu}


def month_of(workers: int, month: int, models: dict[str, float], shares: dict, per_model_night: float) -> dict:
    """The nightly run of `month` (every request of the months before it already forgotten)."""
    entities = per_model_night * NIGHTS_PER_MONTH * month  # forgotten on each model by then
    nights = {name: night(seconds, shares, per_model_night, entities, workers) for name, seconds in models.items()}
    # Models run side by side when there are GPUs for each; otherwise their nights queue up.
    lanes = min(workers, len(models))
    wall = max(max(n["wall_s"] for n in nights.values()), sum(n["wall_s"] for n in nights.values()) / lanes)
    return {"workers": workers, "month": month, "entities_per_model": entities, "night_wall_hours": wall / 3600,
            "gpu_hours_per_month": sum(n["gpu_s"] for n in nights.values()) * NIGHTS_PER_MONTH / 3600,
            "night_by_model_hours": {k: {p: v / 3600 for p, v in n.items()} for k, n in nights.items()}}


def main() -> None:
    sizing = json.loads((RESULTS / "sizing.json").read_text())
    shares = phase_shares(json.loads((RESULTS / "compliance_fanout.json").read_text()))
    models = {m["model"]: m["request_seconds"] for m in sizing["models"]}
    per_model_night = REQUESTS_PER_MONTH / len(models) / NIGHTS_PER_MONTH
    rows = [month_of(w, m, models, shares, per_model_night) for w in WORKERS for m in (1, 12, 36)]
    # The re-audit grows with every entity forgotten: the month the nightly run outgrows its window.
    outgrown = {w: next(m for m in range(1, 1000)
                        if month_of(w, m, models, shares, per_model_night)["night_wall_hours"] > NIGHT_HOURS)
                for w in WORKERS}
    write_result("capacity", {
        "assumptions": {"requests_per_month": REQUESTS_PER_MONTH, "models": list(models),
                        "request_gpu_seconds": models, "phase_shares_from_cpu_tiny_world": shares,
                        "night_window_hours": NIGHT_HOURS,
                        "gpu_seconds_source": "bench/results/sizing.json (computed, assumed H100 efficiency)"},
        "rows": rows, "month_the_night_outgrows_its_window": outgrown})


if __name__ == "__main__":
    main()
