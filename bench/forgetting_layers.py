"""Where does an adapter's forgetting live? Gold recall with its weight change applied to some blocks only.

For each request a `bench/audit.py` run left behind, the adapter is merged into a copy of the world
model, and the difference to the model (the weight change) is put back block by block: on no block,
every block, each block alone, each prefix (blocks 0..k) and each suffix (blocks k..last), and the
attention or the MLP projections alone (in every block, and in block 0). The
entity's gold recall (ROUGE-L, greedy) on each variant says which blocks carry the forgetting. An
update that forgets through the first block alone cuts the name off from what the model stores about
it; a few fine-tuning steps can reconnect it, and everything behind the name comes back with it.

    python bench/forgetting_layers.py --run audit_forget01_single_s42_swap8_seed1
"""

from __future__ import annotations

import argparse
import re
import time
from collections.abc import Callable

import torch
from common import ROOT, stored_requests, write_result

from lethe.config import load_params

BLOCK = re.compile(r"\.(?:layers|h|blocks)\.(\d+)\.")


def _block(name: str) -> int | None:
    found = BLOCK.search(name)
    return int(found.group(1)) if found else None


def _kind(name: str) -> str:
    return "mlp" if ".mlp." in name else "attention" if "attn" in name else "other"


def _subsets(blocks: int) -> dict[str, Callable[[str], bool]]:
    """Which weight changes each variant keeps, by parameter name."""
    def within(chosen: set[int | None], kind: str | None = None) -> Callable[[str], bool]:
        return lambda name: _block(name) in chosen and (kind is None or _kind(name) == kind)

    every: set[int | None] = set(range(blocks)) | {None}
    out = {"none": within(set()), "every": within(every)}
    out.update({f"only {b}": within({b}) for b in range(blocks)})
    out.update({f"0..{b}": within(set(range(b + 1))) for b in range(1, blocks - 1)})
    out.update({f"{b}..{blocks - 1}": within(set(range(b, blocks))) for b in range(1, blocks - 1)})
    out.update({f"{kind} only": within(every, kind) for kind in ("attention", "mlp")})
    out.update({f"{kind} of block 0": within({0}, kind) for kind in ("attention", "mlp")})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a folder of artifacts/bench/ written by bench/audit.py")
    parser.add_argument("--size", default="default")
    args = parser.parse_args()

    from lethe.data import author_qa
    from lethe.evaluate.audit import answered, load_plain
    from lethe.llm.layers import decoder_blocks
    from lethe.supervision.baselines import author_index

    params = load_params()
    device, batch, tokens = params.backend.device, params.backend.batch_size, params.audit.max_new_tokens
    world = ROOT / "artifacts" / "world" / args.size
    run = ROOT / "artifacts" / "bench" / args.run
    started = time.perf_counter()
    out: dict = {"run": args.run, "entities": {}}
    for anchor, work in stored_requests(run):
        gold = [(qa.question, qa.answer) for qa in author_qa(author_index(anchor))]
        model = load_plain(world / "model", None, device, batch)
        merged = load_plain(world / "model", work / "unlearn" / "adapter", device, batch)
        weights, changed = dict(model.model.named_parameters()), dict(merged.model.named_parameters())
        delta = {name: (changed[name] - weights[name]).detach() for name in weights
                 if name in changed and not torch.equal(changed[name], weights[name])}
        del merged
        original = {name: weights[name].detach().clone() for name in delta}
        norms: dict[str, float] = {}
        for name, change in delta.items():
            key = str(_block(name))
            norms[key] = norms.get(key, 0.0) + float(change.norm()) ** 2
        recall = {}
        for label, kept in _subsets(len(decoder_blocks(model.model))).items():
            with torch.no_grad():
                for name, change in delta.items():
                    weights[name].copy_(original[name] + change if kept(name) else original[name])
            scores = answered(model, gold, tokens)[1]
            recall[label] = sum(scores) / len(scores)
            print(anchor, label, round(recall[label], 3), flush=True)
        out["entities"][anchor] = {"change_norm_by_block": {k: v ** 0.5 for k, v in sorted(norms.items())},
                                   "gold_recall": recall}
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    write_result(f"forgetting_layers_{args.run}", out)


if __name__ == "__main__":
    main()
