"""Does each stored request's model still recognize every other entity? The gate's recognition check
(lethe/evaluate/recognition.py) measured on adapters `bench/audit.py` runs left behind, beside the
entity-retention check (question-answer ROUGE) that the same request's evaluation recorded.

For every request folder of each run (and, with --steps, every checkpoint it kept), the start model
with the adapter merged in answers every elicitation prompt about every other author of the world,
greedily; an author's recognition is the share of answers that name them without refusing. The base
model's shares are the reference, as in the gate. No training: the stored adapters are judged as
they are.

    python bench/recognition.py /tmp/s60a/artifacts/bench/audit_forget05_chained_s60_thorough_chain_... --tag s62

A request from a composed champion (`from-<hash>`) starts from `<run>/_composed/<hash>/model`, and the
anchors of the run's requests whose adapter was written before its own are spared with its anchor
(a chain runs in order); a request from the base spares only its anchor.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import ROOT, write_result

from lethe.config import load_params
from lethe.evaluate import metrics as M
from lethe.evaluate.recognition import entity_recognition, recognition_prompts
from lethe.evaluate.runner import with_adapter
from lethe.evaluate.suite import other_entities
from lethe.llm.backend import Backend
from lethe.ops.gate import recognition_check
from lethe.ops.lineage import git_commit


def request_folders(run: Path) -> list[tuple[str, Path, float]]:
    """(anchor, work folder, adapter mtime) of each request of a run that left an adapter, oldest first."""
    found = []
    for work in run.glob("*/from-*"):
        adapter = work / "unlearn" / "adapter" / "adapter_config.json"
        if adapter.is_file():
            found.append((json.loads((work / "mine" / "request.json").read_text())["anchor"], work,
                          adapter.stat().st_mtime))
    return sorted(found, key=lambda item: item[2])


def stored_retention(work: Path, spared: set[str]) -> dict | None:
    """The weakest other entity's retention (ROUGE after / the base's) the request's evaluation recorded."""
    path = work / "evaluation" / "evaluation.json"
    if not path.is_file():
        return None
    after = json.loads(path.read_text())["evaluation"]["after"]
    now, base = after.get(M.ENTITY_ROUGE) or {}, after.get(M.BASE_ENTITY_ROUGE) or {}
    ratios = {name: now[name] / base[name] for name in now if name not in spared and base.get(name)}
    if not ratios:
        return None
    name = min(ratios, key=ratios.get)
    return {"weakest": name, "ratio": round(ratios[name], 4), "bound": load_params().gate.min_entity_retention}


def judge(params, start: Path, adapter: Path, prompts: dict, base: dict[str, float], spared: set[str]) -> dict:
    """Recognition of every entity in `prompts` by `start` with `adapter` merged, and the gate's verdict."""
    started = time.perf_counter()
    shares = entity_recognition(with_adapter(Backend.from_params(start, params.backend), adapter), prompts,
                                params.evaluate.max_new_tokens)
    check = recognition_check({M.ENTITY_RECOGNITION: shares, M.BASE_ENTITY_RECOGNITION: base}, params.gate,
                              sorted(spared))
    ratios = {n: round(shares[n] / base[n], 4) for n in shares if n not in spared and base.get(n)}
    return {"adapter": str(adapter), "check": {"value": check.value, "passed": check.passed, "note": check.note},
            "mean_ratio": round(sum(ratios.values()) / len(ratios), 4) if ratios else None,
            "below_bound": sorted(n for n, r in ratios.items() if r < params.gate.min_entity_recognition
                                  and base[n] >= params.gate.recognized_from),
            "shares": {n: round(v, 4) for n, v in shares.items()}, "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench/audit.py run folders (artifacts/bench/<name>)")
    parser.add_argument("--world", default="artifacts/world/default")
    parser.add_argument("--steps", action="store_true", help="also every checkpoint under unlearn/step_adapters")
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    params = load_params(ROOT / "params.yaml")
    model = ROOT / args.world / "model"
    names = other_entities(model, params.unlearn.entity_retain_names, set())
    prompts = recognition_prompts(names, params.elicit.prompts)
    started = time.perf_counter()
    base = entity_recognition(Backend.from_params(model, params.backend), prompts, params.evaluate.max_new_tokens)
    results = []
    for run in args.runs:
        run = run if run.is_absolute() else ROOT / "artifacts" / "bench" / run
        requests = request_folders(run)
        for index, (anchor, work, _) in enumerate(requests):
            chained = work.name != "from-base"
            spared = {anchor} | ({a for a, _, _ in requests[:index]} if chained else set())
            start = run / "_composed" / work.name.removeprefix("from-") / "model" if chained else model
            asked = {n: p for n, p in prompts.items() if n not in spared}
            adapters = [work / "unlearn" / "adapter"]
            if args.steps:
                adapters += sorted((work / "unlearn" / "step_adapters").glob("step-*"),
                                   key=lambda p: int(p.name.removeprefix("step-")))
            judged = [judge(params, start, a, asked, base, spared) for a in adapters]
            results.append({"run": run.name, "anchor": anchor, "start": str(start), "spared": sorted(spared),
                            "retention": stored_retention(work, spared), "adapters": judged})
            for j in judged:
                print(f"{anchor:24s} {Path(j['adapter']).name:10s} recognition {j['check']['value']} "
                      f"({j['check']['note']}) mean {j['mean_ratio']}", flush=True)
    write_result(f"recognition_{args.tag}" if args.tag else "recognition", {
        "command": "python bench/recognition.py " + " ".join(str(r) for r in args.runs)
                   + (" --steps" if args.steps else "") + (f" --tag {args.tag}" if args.tag else ""),
        "lethe_commit": git_commit(), "world": args.world, "templates": len(params.elicit.prompts),
        "bounds": {"min_entity_recognition": params.gate.min_entity_recognition,
                   "recognized_from": params.gate.recognized_from},
        "base": {n: round(v, 4) for n, v in base.items()}, "requests": results,
        "wall_seconds": round(time.perf_counter() - started, 1)})


if __name__ == "__main__":
    main()
