"""How many probes each author's held-out split holds: MAGE run to validation (no training) on every author of a
TOFU split, and per author the rows of the split's parts against the gate's floor of probes.

The audit's probes are the confident greedy answers the split holds out (lethe.supervision.heldout); with
fewer than `gate.min_heldout_probes` the gate rejects the request as too thin to judge, whatever the training
did, and the dev part's probes are all the adaptive budget sees. To see what a change to mining or to the
split does, run it in two checkouts (it imports the `lethe` of the checkout it sits in; copy it into an older
one, with that checkout's artifacts/world linked to the built world):

    python bench/heldout_split.py --split forget05 --params profiles/thorough.yaml --tag s60
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from audit import _override
from common import ROOT, built_world, write_result

from lethe.config import Params, load_params
from lethe.data import load_authors, split_author_indices
from lethe.mage import MagePipeline, Request, request_slug
from lethe.ops.lineage import git_commit


def split_row(anchor: str, params: Params, model: str, work: Path) -> dict:
    """One author mined to validation: the split's parts, its probes and the floor."""
    started = time.perf_counter()
    out = MagePipeline(Request(anchor, model), work / request_slug(anchor), params).run()
    row = {"author": anchor, "status": out["status"], "seconds": round(time.perf_counter() - started, 1),
           "graph_nodes": out["graph_nodes"]}
    synthesis = Path(out["workdir"]) / "synthesis.json"
    if synthesis.is_file():
        heldout = json.loads(synthesis.read_text())["heldout"]
        floor = params.gate.min_heldout_probes
        row |= {"rows": heldout["rows"], "asked": heldout.get("asked"), "held_out_by": heldout["held_out_by"],
                "audit_nodes": heldout["nodes"].get("audit", []), "dev_nodes": heldout["nodes"].get("dev", []),
                "floor": floor, "audit_holds_floor": heldout["rows"]["audit"] >= floor}
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", default="forget05", choices=("forget01", "forget05"))
    parser.add_argument("--params", default="", help="a params file other than params.yaml (an overlay included)")
    parser.add_argument("--set", action="append", default=[], help="params override, e.g. audit.dev_share=0.2")
    parser.add_argument("--author", action="append", default=[], help="only this author of the split (repeatable)")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()

    params = _override(load_params(args.params or None), args.set)
    model = str(Path(built_world(params.world.output_dir)["model_path"]).resolve())
    anchors = [load_authors()[i] for i in split_author_indices(args.split)]
    if unknown := set(args.author) - set(anchors):
        parser.error(f"not authors of {args.split}: {sorted(unknown)}")
    anchors = [a for a in anchors if a in args.author] if args.author else anchors
    name = f"heldout_split_{args.split}{'_' + args.tag if args.tag else ''}"
    work = ROOT / "artifacts" / "bench" / name
    rows = [split_row(anchor, params, model, work) for anchor in anchors]
    judged = [r for r in rows if "rows" in r]
    write_result(name, {
        "command": f"python bench/heldout_split.py --split {args.split}"
                   + (f" --params {args.params}" if args.params else "")
                   + "".join(f" --set {s}" for s in args.set) + "".join(f" --author '{a}'" for a in args.author)
                   + (f" --tag {args.tag}" if args.tag else ""),
        "lethe_commit": git_commit(), "audit": params.audit.model_dump(mode="json"),
        "authors": rows,
        "summary": {"authors": len(rows), "split": len(judged),
                    "audit_holds_floor": sum(r["audit_holds_floor"] for r in judged),
                    "dev_probes": sorted(r["rows"]["dev"] for r in judged),
                    "audit_probes": sorted(r["rows"]["audit"] for r in judged)}})


if __name__ == "__main__":
    main()
