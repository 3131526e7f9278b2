"""How much of a relearning gap is the attack's own noise?

The audit runs `audit.relearn_attacks` independent attacks (own rows and seed each) on the unlearned
model and on the never-trained reference, and the gate reads the gap between their means. This reads
every per-attack recall the `bench/audit.py` runs left in `artifacts/bench/*/*/*/evaluation/evaluation.json`
and reports, per probe set (held-out MAGE probes, TOFU gold), the spread between attacks of one model
and what that spread means for the gap: the standard deviation of a difference of two k-attack means is
about sd x sqrt(2 / k). It says nothing about the probes' own sampling (a fixed set of 15-20 held-out
probes): that spread is not in these files.

    python bench/relearn_spread.py
"""

from __future__ import annotations

import json
import math
import statistics

from common import ROOT, write_result


def per_attack_recalls(evaluation: dict) -> list[tuple[str, str, list[float]]]:
    """(model, probe set, recall after each attack) for every rate of every audited model in one file."""
    evaluation = evaluation.get("evaluation", evaluation)
    found = []
    for model in ("after", "reference"):
        for probe in ("heldout", "gold"):
            for rate in (evaluation.get(model) or {}).get(f"relearn_{probe}_by_lr", {}).values():
                if len(rate.get("each", [])) >= 2:
                    found.append((model, probe, rate["each"]))
    return found


def main() -> None:
    spreads: dict[str, list[float]] = {"heldout": [], "gold": []}
    attacks: set[int] = set()
    runs = 0
    for path in sorted((ROOT / "artifacts" / "bench").glob("*/*/*/evaluation/evaluation.json")):
        found = per_attack_recalls(json.loads(path.read_text()))
        runs += bool(found)
        for _model, probe, each in found:
            spreads[probe].append(statistics.pstdev(each))
            attacks.add(len(each))
    summary = {}
    for probe, values in spreads.items():
        if not values:
            continue
        mean_sd, k = statistics.mean(values), min(attacks)
        summary[probe] = {"models": len(values), "per_attack_sd_mean": mean_sd,
                          "per_attack_sd_median": statistics.median(values), "per_attack_sd_max": max(values),
                          "attacks_averaged": k, "gap_sd": mean_sd * math.sqrt(2 / k)}
    out = write_result("relearn_spread", {"requests": runs, "spread": summary,
                                          "note": "attack-to-attack spread only; the probe sample's is not here"})
    print(json.dumps(summary, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
