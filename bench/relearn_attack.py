"""How strong is the LoRA relearning attack against the full-parameter one?

`audit.relearn_lora_rank > 0` swaps the audit's full-parameter attack for a LoRA (what fits a large
model on one GPU). This measures, on adapters a `bench/audit.py` run left behind, the gold recall
after each attack on the unlearned model and on the never-trained reference (the world's retain
model), and their gap. Same attack rows and seeds as the audit (audit.relearn_rows from the training
forget set, audit.relearn_attacks draws, averaged). Each attack reports ROUGE-L recall and, as the gate
reads it (gate.relearn_tokens: novel), recall of the tokens the attack's rows and question lack. A second
invocation on the same run adds its attacks to the same JSON.

An attack is `full@LR` or `loraR@LR`, optionally `xSTEPS` (default audit.relearn_steps): an adapter
trained against the audit's own attack (unlearn.inner_attack_steps) is checked here against others.

    python bench/relearn_attack.py --run audit_forget01_single_s27_baseline
    python bench/relearn_attack.py --run audit_forget01_single_s27_baseline --attacks full@0.001,lora8@0.01
    python bench/relearn_attack.py --run audit_forget01_single_s42_swap8_seed1 --attacks full@0.001,full@0.0003x30
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from common import RESULTS, ROOT, stored_requests, write_result

from lethe.config import load_params


def _attack(spec: str, default_steps: int) -> tuple[int, float, int]:
    """'full@0.001' -> (0, 1e-3, default_steps); 'lora8@0.01x30' -> (8, 1e-2, 30)."""
    kind, rate = spec.split("@")
    lr, _, steps = rate.partition("x")
    return (0 if kind == "full" else int(kind.removeprefix("lora"))), float(lr), int(steps or default_steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a folder of artifacts/bench/ written by bench/audit.py")
    parser.add_argument("--size", default="default")
    parser.add_argument("--attacks", default="full@0.001,lora8@0.001,lora8@0.01,lora32@0.01")
    args = parser.parse_args()

    from lethe.data import author_qa
    from lethe.evaluate.audit import answered, attack_rows, attacked_recall, load_plain
    from lethe.supervision.baselines import author_index

    params = load_params()
    cfg, device, batch = params.audit, params.backend.device, params.backend.batch_size
    world = ROOT / "artifacts" / "world" / args.size
    run = ROOT / "artifacts" / "bench" / args.run
    specs = args.attacks.split(",")
    out: dict = {"run": args.run, "attack_rows": cfg.relearn_rows, "attack_steps": cfg.relearn_steps,
                 "attacks_averaged": cfg.relearn_attacks, "entities": {}}
    started = time.perf_counter()
    reference = load_plain(world / "retain_model", None, device, batch)
    for anchor, work in stored_requests(run):
        gold = [(qa.question, qa.answer) for qa in author_qa(author_index(anchor))]
        forget = [(r["question"], r["answer"]) for r in map(json.loads, (work / "mine" / "forget_set.jsonl").open())]
        draws = attack_rows(forget, cfg.relearn_rows, cfg.seed, cfg.relearn_attacks)
        unlearned = load_plain(world / "model", work / "unlearn" / "adapter", device, batch)
        rows = {}
        for spec in specs:
            rank, lr, steps = _attack(spec, cfg.relearn_steps)
            means, novel = {}, {}
            for label, backend in (("unlearned", unlearned), ("reference", reference)):
                result = attacked_recall(backend, draws, {"gold": gold}, steps, lr, cfg.seed, cfg.max_new_tokens,
                                         lora_rank=rank)["gold"]
                means[label], novel[label] = result.mean, result.novel_mean
            rows[spec] = {**means, "gap": means["unlearned"] - means["reference"],
                          "novel": novel, "novel_gap": novel["unlearned"] - novel["reference"]}
            print(anchor, spec, json.dumps(rows[spec]), flush=True)
        unattacked = answered(unlearned, gold, cfg.max_new_tokens)[1]
        out["entities"][anchor] = {"gold_unattacked": sum(unattacked) / len(unattacked), "attacks": rows}
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_result(f"relearn_attack_{args.run}", _with_earlier(out, RESULTS / f"relearn_attack_{args.run}.json"))


def _with_earlier(out: dict, path: Path) -> dict:
    """`out` plus the attacks an earlier invocation on the same run measured and this one did not."""
    if not path.is_file():
        return out
    earlier = json.loads(path.read_text())
    for anchor, entity in earlier.get("entities", {}).items():
        if anchor in out["entities"]:
            out["entities"][anchor]["attacks"] = {**entity["attacks"], **out["entities"][anchor]["attacks"]}
    out["wall_seconds"] += earlier.get("wall_seconds", 0.0)
    return out


if __name__ == "__main__":
    main()
