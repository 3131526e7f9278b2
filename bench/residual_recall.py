"""Which of the entity's facts survive unlearning, and did the mined forget set cover them?

For each request a `bench/audit.py` run left an adapter for, every gold QA of the entity is answered
(greedy) by the world model, the unlearned model and the never-trained reference (the world's retain
model). Each gold fact's recall counts the answer tokens its question does not already give away
(lethe.rouge.novel_recall; the gate's relearning rows also leave out the attack's own tokens).

Each gold fact's coverage is how much of that answer a set of mined rows states: the largest share of
its tokens (outside its question) found in one row, question and answer together. Coverage is taken
against the training forget set and against the held-out rows (the dev and audit sets, whose nodes
never reach training), and each fact goes to the first group it reaches `--covered` in: `trained`,
`held_out`, else `unmined`. What stays above the reference on the trained facts is knowledge training
did not push down; on the held-out ones, knowledge the node split kept out of training; on the
unmined ones, knowledge the memory graph never named.

An audit attack at a low rate can leave the unlearned model where it was, so that its relearning gap
is this residual. Where the request's audit stored its attacks' per-probe recall, the gold gap of
each rate is split over the same groups too: which facts the attack brings back.

    python bench/residual_recall.py --run audit_forget01_single_s42_swap8_seed1
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from common import ROOT, stored_requests, write_result

from lethe.config import load_params


def coverage(question: str, answer: str, forget: Sequence[tuple[str, str]]) -> float:
    """The largest share of `answer`'s tokens outside `question` that one forget row states (1.0 when
    the question gives every token away)."""
    from lethe.rouge import novel_recall, tokens

    given = set(tokens(question))
    shares = [novel_recall(f"{q} {a}", answer, given) for q, a in forget]
    known = [s for s in shares if s is not None]
    if len(known) < len(shares):  # every token is in the question
        return 1.0
    return max(known, default=0.0)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


GROUPS = ("trained", "held_out", "unmined")


def group(fact: dict, threshold: float) -> str:
    """Which of GROUPS a fact belongs to, by its coverage in the training and the held-out rows."""
    if fact["coverage"] >= threshold:
        return "trained"
    return "held_out" if fact["heldout_coverage"] >= threshold else "unmined"


def summarize(facts: Sequence[dict]) -> dict:
    """Mean recall of each model, and the unlearned model's residual above the reference, over all facts
    and over each of GROUPS (each fact's `group`)."""
    groups = {"all": list(facts), **{name: [f for f in facts if f["group"] == name] for name in GROUPS}}
    out = {}
    for name, rows in groups.items():
        out[name] = {"facts": len(rows), **{model: _mean([f[model] for f in rows])
                                             for model in ("before", "after", "reference")},
                     "residual": _mean([f["after"] - f["reference"] for f in rows])}
    return out


def attacked_gaps(evaluation: dict, facts: Sequence[dict]) -> dict:
    """Per attack rate of the request's audit, the mean gold gap on new tokens (unlearned model minus the
    never-trained one, both attacked) over each group of facts: which facts the attack brings back."""
    key = "relearn_gold_by_lr"
    after, reference = evaluation["after"].get(key) or {}, (evaluation.get("reference") or {}).get(key) or {}
    out = {}
    for rate in sorted(set(after) & set(reference), key=float):
        gaps: dict[str, list[float]] = {}
        for fact in facts:
            ours, theirs = (side[rate]["novel_per_probe"][fact["index"]] for side in (after, reference))
            if ours is not None and theirs is not None:
                gaps.setdefault(fact["group"], []).append(ours - theirs)
        out[rate] = {name: {"facts": len(values), "gap": _mean(values)} for name, values in gaps.items()}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a folder of artifacts/bench/ written by bench/audit.py")
    parser.add_argument("--size", default="default")
    parser.add_argument("--covered", type=float, default=0.5, help="coverage from which a set states a fact")
    args = parser.parse_args()

    from lethe.data import author_qa
    from lethe.evaluate.audit import load_plain
    from lethe.evaluate.suite import world_record
    from lethe.fileio import load_qa_file
    from lethe.layout import MineLayout
    from lethe.rouge import novel_recall, tokens
    from lethe.supervision.baselines import author_index

    params = load_params()
    device, batch, max_tokens = params.backend.device, params.backend.batch_size, params.audit.max_new_tokens
    world_model = ROOT / "artifacts" / "world" / args.size / "model"
    reference_model = world_record(world_model)["retain_model_path"]
    run = ROOT / "artifacts" / "bench" / args.run
    started = time.perf_counter()
    out: dict = {"run": args.run, "covered_from": args.covered, "entities": {}}
    for anchor, work in stored_requests(run):
        gold = [(qa.question, qa.answer) for qa in author_qa(author_index(anchor))]
        mined = MineLayout(work / "mine")
        forget = load_qa_file(mined.forget_set, "forget set")
        heldout = load_qa_file(mined.dev_set, "dev set") + load_qa_file(mined.audit_set, "audit set")
        kept = [i for i, (q, a) in enumerate(gold) if novel_recall(a, a, set(tokens(q))) is not None]  # not all given
        facts = [{"index": i, "question": gold[i][0], "expected": gold[i][1],
                  "coverage": round(coverage(*gold[i], forget), 4),
                  "heldout_coverage": round(coverage(*gold[i], heldout), 4)} for i in kept]
        gold = [gold[i] for i in kept]
        models = (("before", world_model, None), ("after", world_model, work / "unlearn" / "adapter"),
                  ("reference", reference_model, None))
        for model, path, adapter in models:
            answers = load_plain(path, adapter, device, batch).greedy([q for q, _ in gold], max_tokens)
            for fact, answer, (q, a) in zip(facts, answers, gold):
                fact[f"{model}_answer"] = answer
                fact[model] = novel_recall(answer, a, set(tokens(q)))
        for fact in facts:
            fact["group"] = group(fact, args.covered)
        summary = summarize(facts)
        print(anchor, summary, flush=True)
        evaluation = work / "evaluation" / "evaluation.json"
        audit = json.loads(evaluation.read_text())["evaluation"] if evaluation.is_file() else None
        attacked = attacked_gaps(audit, facts) if audit else {}
        print(anchor, "attacked", attacked, flush=True)
        out["entities"][anchor] = {"forget_rows": len(forget), "heldout_rows": len(heldout), "summary": summary,
                                   "attacked_gaps": attacked, "facts": facts}
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_result(f"residual_recall_{args.run}", out)


if __name__ == "__main__":
    main()
