"""What the score cache saves: the suite on the starting model, cold, again, and for another anchor.

The evaluation scores the unmodified starting model on the same retain, general, neighbor and MIA
rows for every request. This times `suite_models(..., ["before"])` on the default world with an
empty cache (the first request on a base model), once more for the same anchor (a retried or
re-run request) and once for another anchor (a new request on the same base model), and checks the
numbers against a run without the cache.

    python bench/score_cache.py                       # forget01's two authors
    python bench/score_cache.py --anchors "Basil Mahfouz Al-Kuwaiti" "Nikolai Abilov" --forget-sets A.jsonl B.jsonl
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, write_result

from lethe.config import load_params
from lethe.evaluate import metrics as M
from lethe.evaluate.runner import suite_models


def _suite(params, model: Path, anchor: str, forget_set: Path | None, workdir: Path, cache: bool) -> tuple[dict, float]:
    cfg = params.model_copy(update={"registry": params.registry.model_copy(update={"workdir": str(workdir)}),
                                    "backend": params.backend.model_copy(update={"score_cache": cache})})
    start = time.perf_counter()
    measured = suite_models(cfg, model, Path("unused"), [anchor], forget_set, ["before"])["before"]["metrics"]
    return measured, time.perf_counter() - start


def _largest_difference(a: dict, b: dict) -> float:
    keys = [k for k in a if isinstance(a[k], float) and k != "eval_seconds" and isinstance(b.get(k), float)]
    return max(abs(a[k] - b[k]) for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", default="default")
    parser.add_argument("--anchors", nargs=2, default=["Basil Mahfouz Al-Kuwaiti", "Nikolai Abilov"])
    parser.add_argument("--forget-sets", nargs=2, type=Path, default=None,
                        help="the requests' mined forget sets (scored as forget_set_rouge); none by default")
    args = parser.parse_args()
    params = load_params()
    model = ROOT / params.world.output_dir / args.world / "model"
    first, second = args.anchors
    sets = args.forget_sets or [None, None]
    work = Path(tempfile.mkdtemp(prefix="lethe-score-cache-"))
    try:
        uncached, uncached_s = _suite(params, model, first, sets[0], work, cache=False)
        runs = {}
        for label, anchor, forget_set in (("cold", first, sets[0]), ("same_anchor_again", first, sets[0]),
                                          ("other_anchor", second, sets[1])):
            measured, seconds = _suite(params, model, anchor, forget_set, work, cache=True)
            runs[label] = {"anchor": anchor, "seconds": round(seconds, 2), "hits": measured[M.SCORE_CACHE_HITS],
                           "misses": measured[M.SCORE_CACHE_MISSES]}
            if label == "cold":
                runs[label]["largest_difference_vs_uncached"] = _largest_difference(measured, uncached)
        store_mb = sum(p.stat().st_size for p in (work / "_scores").glob("*.sqlite")) / 2**20
    finally:
        shutil.rmtree(work, ignore_errors=True)
    command = shlex.join(["python", "bench/score_cache.py", *sys.argv[1:]])
    write_result("score_cache", {"command": command, "world": args.world,
                                 "forget_sets": [str(s) if s else None for s in sets],
                                 "uncached_seconds": round(uncached_s, 2), "runs": runs,
                                 "store_mb": round(store_mb, 2)})


if __name__ == "__main__":
    main()
