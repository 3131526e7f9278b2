"""Do the held-out probes test memories the model says? Stored mines, scored on the starting model.

For each request a `bench/audit.py` run left behind, the starting model answers the audit set's and the
dev set's questions greedily (as the audit does before unlearning), and each probe is scored two ways:
ROUGE-L recall, and the share of its facts stated (`lethe.evaluate.audit.stated_facts`: the expected
answer's tokens that are neither in the question nor function words). A probe whose facts the model
does not state before unlearning cannot show a memory go. Writes bench/results/stated_probes[_TAG].json.

    python bench/stated_probes.py artifacts/bench/audit_forget05_single_s49_factscontent
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import ROOT, write_result

from lethe.config import load_params
from lethe.evaluate.audit import answered, fact_share, stated_facts
from lethe.fileio import load_qa_file
from lethe.llm.backend import Backend

PROBE_SETS = ("audit_set", "dev_set")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a bench/audit.py work folder (artifacts/bench/<name>)")
    parser.add_argument("--world", type=Path, default=ROOT / "artifacts/world/default")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    params = load_params()
    cfg = params.audit
    backend = Backend.load(args.world / "model", params.backend.device, params.backend.batch_size)
    rows = []
    for mine in sorted(args.run.glob("*/from-base/mine")):
        row: dict = {"anchor": json.loads((mine / "request.json").read_text())["anchor"]}
        for name in PROBE_SETS:
            pairs = load_qa_file(mine / f"{name}.jsonl", name)
            answers, rouge = answered(backend, pairs, cfg.max_new_tokens)
            facts, stated = stated_facts(answers, pairs, cfg.stated_min_facts)
            shares = [fact_share(a, q, r) for a, (q, r) in zip(answers, pairs)]
            row[name] = {"probes": len(pairs), "rouge": sum(rouge) / len(rouge) if rouge else None,
                         "facts": facts, "stated": stated,
                         "stated_probes": sum(s is not None and s >= cfg.stated_min_facts for s in shares),
                         "probes_without_facts": sum(s is None for s in shares)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    name = "stated_probes" + (f"_{args.tag}" if args.tag else "")
    write_result(name, {"command": f"python bench/stated_probes.py {args.run}", "run": str(args.run),
                        "stated_min_facts": cfg.stated_min_facts, "rows": rows})


if __name__ == "__main__":
    main()
