"""How much of a relearning gap could the choice of probes alone make?

For every `bench/audit.py` request whose audit kept each probe's attacked recall (`per_probe`, from
stop 37 on), this recomputes the gate's paired bootstrap interval of the relearning gap two ways: over
the probes one by one, and over the facts they ask about (the memory-graph node of each held-out probe,
read from the request's `audit_set.jsonl` where the audit did not record it; each gold probe is its
own fact). Probes of one node repeat one fact, so the by-fact interval is the honest one; the JSON
keeps both, with the gap, its share of what the model knew beyond the never-trained reference and the
same share at both ends of the interval.

    python bench/relearn_interval.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from common import ROOT, write_result


def intervals(evaluation: dict, audit_set: Path) -> dict[str, dict]:
    """Per probe set: the gap, its share, and the interval by probe and by fact (None where not recorded);
    the held-out probes' nodes are read from `audit_set` where the audit did not record them."""
    from lethe.evaluate import metrics as M
    from lethe.evaluate.runner import probe_nodes
    from lethe.ops.gate import relearning_gap, relearning_gap_interval

    after, reference, before = evaluation["after"], evaluation["reference"], evaluation["before"]
    out = {}
    for probes in ("heldout", "gold"):
        key = M.RELEARNED_BY_RATE[probes]
        if not after.get(key) or not reference.get(key):
            continue
        gap, _, _, lr = relearning_gap(after, reference, probes)
        by_probe_after = copy.deepcopy(after)
        by_probe_after[key][lr].pop("groups", None)
        by_fact_after = copy.deepcopy(after)
        recorded = by_fact_after[key][lr]
        if probes == "heldout" and "groups" not in recorded and recorded.get("per_probe"):
            recorded["groups"] = probe_nodes(audit_set, len(recorded["per_probe"]))
        by_probe = relearning_gap_interval(by_probe_after, reference, probes, lr)
        by_fact = relearning_gap_interval(by_fact_after, reference, probes, lr)
        start = M.RECALLED[probes]
        margin = (before[start] - reference[start]
                  if before.get(start) is not None and reference.get(start) is not None else None)

        def share(value: float | None) -> float | None:
            return round(value / margin, 4) if value is not None and margin and margin > 0.05 else None

        out[probes] = {"gap": round(gap, 4), "share": share(gap), "rate": lr,
                       "by_probe": [round(v, 4) for v in by_probe[:2]] if by_probe else None,
                       "by_fact": [round(v, 4) for v in by_fact[:2]] if by_fact else None,
                       "probes": by_fact[2] if by_fact else None, "facts": by_fact[3] if by_fact else None,
                       "share_by_fact": [share(v) for v in by_fact[:2]] if by_fact else None}
    return out


def main() -> None:
    rows = []
    for path in sorted((ROOT / "artifacts" / "bench").glob("*/*/*/evaluation/evaluation.json")):
        evaluation = json.loads(path.read_text())
        evaluation = evaluation.get("evaluation", evaluation)
        audit_set = path.parents[1] / "mine" / "audit_set.jsonl"
        if not audit_set.is_file():
            continue
        found = intervals(evaluation, audit_set)
        if any(v["by_probe"] for v in found.values()):
            rows.append({"run": path.parts[-5], "request": path.parts[-4], **found})
    widths = {how: [v[how][1] - v[how][0] for row in rows for k, v in row.items()
                    if k == "heldout" and v.get(how)] for how in ("by_probe", "by_fact")}
    summary = {how: {"min": round(min(w), 4), "max": round(max(w), 4)} if w else None for how, w in widths.items()}
    write_result("relearn_interval", {"command": "python bench/relearn_interval.py", "requests": rows,
                                      "heldout_interval_width": summary})
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
