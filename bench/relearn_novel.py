"""How much of the relearning gap is the attacker's own words? Stored requests re-attacked, answers kept.

The relearning attack fine-tunes on 8 training forget rows, then scores the probes by ROUGE-L recall.
Held-out probes share wording with those rows (the entity's name, its genre), and an attacked model
that repeats the rows' words scores on them without any held-out fact coming back. For every stored
request of the given bench runs this re-runs the audit's attacks (same rows, seeds and rate) on the
unlearned model and on the never-trained reference, keeps the answers, and scores each probe twice:
ROUGE-L recall, and recall of only the tokens neither the attack's rows nor the question contain
(`lethe.evaluate.audit.novel_each`). Writes bench/results/relearn_novel.json.

    python bench/relearn_novel.py artifacts/bench/audit_forget01_single_s37_*
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common import ROOT, stored_requests, write_result

from lethe.config import load_params
from lethe.data import author_qa
from lethe.evaluate import metrics as M
from lethe.evaluate.audit import _relearning, answered, load_plain, mean_known, novel_each
from lethe.evaluate.runner import _audit_inputs
from lethe.evaluate.suite import never_trained_reference
from lethe.ops.gate import relearning_gap, relearning_novel_gap
from lethe.supervision.baselines import author_index


def _novel_unattacked(backend, pairs, attacks, params) -> float:
    """The model's recall of the tokens each attack would not teach, before any attack (mean over attacks)."""
    answers, _ = answered(backend, pairs, params.audit.max_new_tokens)
    means = [mean_known(novel_each(answers, pairs, rows)) for rows in attacks]
    return sum(m for m in means if m is not None) / max(1, sum(m is not None for m in means))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench/audit.py work folders (artifacts/bench/<name>)")
    parser.add_argument("--world", type=Path, default=ROOT / "artifacts/world/default")
    args = parser.parse_args()
    params = load_params()
    model, rows = args.world / "model", []
    for run in args.runs:
        for anchor, request in stored_requests(run):
            reference = never_trained_reference(model, [anchor])
            inputs = _audit_inputs(params, request / "mine", model, anchor)
            gold = [(qa.question, qa.answer) for qa in author_qa(author_index(anchor))]
            probes = {"heldout": inputs["heldout"], "gold": gold}
            measured, unattacked = {}, {}
            for which, path, adapter in (("before", model, None), ("after", model, request / "unlearn" / "adapter"),
                                         ("reference", reference, None)):
                backend = load_plain(path, adapter, params.backend.device, params.backend.batch_size)
                unattacked[which] = {name: _novel_unattacked(backend, pairs, inputs["attacks"], params)
                                     for name, pairs in probes.items()}
                if which != "before":
                    measured[which] = _relearning(backend, inputs["heldout"], gold, inputs["attacks"], params.audit,
                                                  params.audit.max_new_tokens, inputs["heldout_nodes"])
            row = {"run": run.name, "anchor": anchor}
            for name, pairs in probes.items():
                gap, _, _, lr = relearning_gap(measured["after"], measured["reference"], name)
                novel = relearning_novel_gap(measured["after"], measured["reference"], name, lr)
                record = measured["after"][M.RELEARNED_BY_RATE[name]][lr]
                margin = unattacked["before"][name] - unattacked["reference"][name]
                row[name] = {"lr": lr, "probes": len(pairs),
                             "probes_with_novel_tokens": sum(v is not None for v in record["novel_per_probe"]),
                             "rouge_gap": round(gap, 4), "novel_gap": round(novel[0], 4),
                             "novel_attacked": [round(novel[1], 4), round(novel[2], 4)],
                             "novel_unattacked": {k: round(v[name], 4) for k, v in unattacked.items()},
                             "novel_share": round(novel[0] / margin, 4) if margin > 0.05 else None}
            lr = row["heldout"]["lr"]
            answers = {which: measured[which]["_relearn_answers"]["heldout"][lr] for which in measured}
            row["examples"] = [{"node": node, "question": q, "expected": a, "after_attacked": mine,
                                "reference_attacked": theirs}
                               for node, (q, a), mine, theirs in zip(inputs["heldout_nodes"], inputs["heldout"],
                                                                     answers["after"], answers["reference"])]
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "examples"}), file=sys.stderr)
    write_result("relearn_novel", {"command": "python bench/relearn_novel.py " + " ".join(str(r) for r in args.runs),
                                   "requests": rows})


if __name__ == "__main__":
    main()
