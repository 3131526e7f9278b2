"""How much does the gate's re-elicitation verdict depend on its draw?

On adapters a `bench/audit.py` run left behind, re-elicit each request's anchor (the audit's
`reelicit`, scored against the request's mined graph) at several sample counts per prompt, each over
several seeds, and record the return of every draw and how many exceed the gate's bound (the
never-trained reference's return at the same count and the gate's seed, plus gate.max_reelicit_excess).
Each draw is scored twice: over the graph the gate reads (lethe.evaluate.audit.audited_graph: other
entities the model keeps left out, since stop 50) and over every strong node (`*_all_nodes`, before).

    python bench/reelicit_draws.py --run audit_forget01_single_s48_own_reelicit_seed1
    python bench/reelicit_draws.py --run audit_forget01_single_s48_own_seed1_nikolai --samples 5,10 --seeds 10
    python bench/reelicit_draws.py --run audit_forget05_single_s49_factscontent --samples 10 --seeds 1 --tag gate
"""

from __future__ import annotations

import argparse
import time

from common import RESULTS, ROOT, stored_requests, write_result

from lethe.config import load_params


def own_return(memories: dict, own: set[str], params) -> float | None:
    """A draw's return over the `own` strong memories only (memories: {key: [strength, strength now]})."""
    kept = {key: pair for key, pair in memories.items() if key in own}
    total = sum(before for before, _ in kept.values())
    back = sum(before for before, now in kept.values() if now >= params.score.tau)
    return back / total if total else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--run", required=True, help="a bench/audit.py run folder under artifacts/bench")
    parser.add_argument("--samples", default="5,10", help="samples per prompt, comma-separated")
    parser.add_argument("--seeds", type=int, default=10, help="draws per sample count, from audit.reelicit_seed")
    parser.add_argument("--tag", default="", help="a suffix for the result's name")
    args = parser.parse_args()

    from lethe.evaluate.audit import audited_graph, load_plain, reelicit, strong_memories
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
        own = set(strong_memories(audited_graph(work / "mine" / "graph.json", world / "model", anchor, params),
                                  params.audit.strong_strength))
        unlearned = load_plain(world / "model", work / "unlearn" / "adapter", device, batch)
        by_count = {}
        for n in counts:
            def drawn(seed: int, backend) -> dict:
                audit = params.audit.model_copy(update={"reelicit_samples": n, "reelicit_seed": seed})
                return reelicit(backend, anchor, graph, params.model_copy(update={"audit": audit}))

            started = time.perf_counter()
            floor = drawn(params.audit.reelicit_seed, reference)
            limit, limit_all = (reelicit_limit(own_return(floor["memories"], own, params), params.gate),
                                reelicit_limit(floor["return"], params.gate))
            draws = [drawn(params.audit.reelicit_seed + i, unlearned) for i in range(args.seeds)]
            returns = [own_return(d["memories"], own, params) for d in draws]
            returns_all = [d["return"] for d in draws]
            by_count[str(n)] = {"limit": limit, "returns": returns,
                                "failing_draws": sum(r is not None and r > limit for r in returns),
                                "limit_all_nodes": limit_all, "returns_all_nodes": returns_all,
                                "failing_draws_all_nodes": sum(r is not None and r > limit_all for r in returns_all),
                                "memories": [d["memories"] for d in draws],
                                "seconds": time.perf_counter() - started}
            print(f"{anchor} n={n}: returns {returns} (limit {limit:.3f}); every strong node: {returns_all} "
                  f"(limit {limit_all:.3f})", flush=True)
        requests.append({"anchor": anchor, "other_entities_left_out": sorted(set(strong_memories(
            graph, params.audit.strong_strength)) - own), "by_samples": by_count})
    name = f"reelicit_draws_{args.run}" + (f"_{args.tag}" if args.tag else "")
    write_result(name, {"run": args.run, "first_seed": params.audit.reelicit_seed, "seeds": args.seeds,
                        "requests": requests, "results_dir": str(RESULTS)})


if __name__ == "__main__":
    main()
