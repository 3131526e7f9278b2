"""How much does the gate's re-elicitation verdict depend on its draw?

On adapters a `bench/audit.py` run left behind, re-elicit each request's anchor (the audit's
`reelicit`, scored against the request's mined graph) at several sample counts per prompt, each over
several seeds, and record the return of every draw and how many exceed the gate's bound (the
never-trained reference's return at the same count and the gate's seed, plus gate.max_reelicit_excess).

    python bench/reelicit_draws.py --run audit_forget01_single_s48_own_reelicit_seed1
    python bench/reelicit_draws.py --run audit_forget01_single_s48_own_seed1_nikolai --samples 5,10 --seeds 10
"""

from __future__ import annotations

import argparse
import time

from common import RESULTS, ROOT, stored_requests, write_result

from lethe.config import load_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="a bench/audit.py run folder under artifacts/bench")
    parser.add_argument("--samples", default="5,10", help="samples per prompt, comma-separated")
    parser.add_argument("--seeds", type=int, default=10, help="draws per sample count, from audit.reelicit_seed")
    args = parser.parse_args()

    from lethe.evaluate.audit import load_plain, reelicit
    from lethe.evaluate.floor import reelicit_limit
    from lethe.mining.graph import load_graph

    params = load_params()
    world = ROOT / "artifacts" / "world" / "default"
    device, batch = params.backend.device, params.backend.batch_size
    reference = load_plain(world / "retain_model", None, device, batch)
    counts = [int(n) for n in args.samples.split(",")]
    requests = []
    for anchor, work in stored_requests(ROOT / "artifacts" / "bench" / args.run):
        graph = load_graph(work / "mine" / "graph.json")
        unlearned = load_plain(world / "model", work / "unlearn" / "adapter", device, batch)
        by_count = {}
        for n in counts:
            def drawn(seed: int, backend) -> dict:
                audit = params.audit.model_copy(update={"reelicit_samples": n, "reelicit_seed": seed})
                return reelicit(backend, anchor, graph, params.model_copy(update={"audit": audit}))

            started = time.perf_counter()
            limit = reelicit_limit(drawn(params.audit.reelicit_seed, reference)["return"], params.gate)
            draws = [drawn(params.audit.reelicit_seed + i, unlearned) for i in range(args.seeds)]
            returns = [d["return"] for d in draws]
            by_count[str(n)] = {"limit": limit, "returns": returns,
                                "failing_draws": sum(r is not None and r > limit for r in returns),
                                "memories": [d["memories"] for d in draws],
                                "seconds": time.perf_counter() - started}
            print(f"{anchor} n={n}: returns {returns} (limit {limit:.3f})", flush=True)
        requests.append({"anchor": anchor, "by_samples": by_count})
    write_result(f"reelicit_draws_{args.run}", {"run": args.run, "first_seed": params.audit.reelicit_seed,
                                                 "seeds": args.seeds, "requests": requests,
                                                 "results_dir": str(RESULTS)})


if __name__ == "__main__":
    main()
