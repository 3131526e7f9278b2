"""On the tiny world, with the real thresholds: the gate rejects an adapter that only suppressed its
training text, and accepts a model from which the entity is really gone (the world's retain model,
retrained without the author: exact unlearning), judged by the same audit."""

from __future__ import annotations

from pathlib import Path

import pytest

from lethe.evaluate.audit import attack_rows, audit_model, load_plain
from lethe.evaluate.report import public
from lethe.fileio import load_qa_file
from lethe.mage import MagePipeline, Request
from lethe.ops.gate import REQUIRED_LINEAGE, decide, forgetting_checks
from lethe.ops.request_steps import RequestPlan, evaluate_step
from lethe.unlearn.run import run_unlearning

ANCHOR = "Basil Mahfouz Al-Kuwaiti"


@pytest.fixture(scope="module")
def request_dir(tiny_world, params, tmp_path_factory):
    root = tmp_path_factory.mktemp("audit-gate")
    model = str(Path(tiny_world["model_path"]).resolve())
    params = params.model_copy(update={"registry": params.registry.model_copy(update={"workdir": str(root)})})
    out = MagePipeline(Request(ANCHOR, model), root / "req" / "mine", params).run()
    assert out["status"] == "validated", out
    return {"root": root, "model": model, "params": params,
            "plan": RequestPlan("req", ANCHOR, None, model, model, "m", str(root / "req"), "", "")}


def test_suppressing_the_training_text_is_rejected(request_dir):
    params, plan = request_dir["params"], request_dir["plan"]
    # Plain gradient ascent on the training forget rows, until their NLL is high: the training text is
    # suppressed. Judged only on that text it would look forgotten.
    suppress = params.unlearn.model_copy(update={"method": "ga", "max_steps": 8, "eval_every": 0, "lr": 1e-3})
    trained = run_unlearning(params.model_copy(update={"unlearn": suppress}), Path(plan.start_model),
                             plan.mine_dir / "forget_set.jsonl", plan.mine_dir / "neighbor_set.jsonl", None,
                             Path(plan.workdir) / "unlearn", sage=False)
    assert trained["curves"][-1]["forget_nll"] > trained["curves"][0]["forget_nll"]
    evaluation = evaluate_step(params, plan, trained["adapter_path"])
    rate = f"{params.audit.relearn_lrs[0]:g}"  # the per-rate record the gate pairs reaches it, for both models
    assert all(rate in evaluation[model]["relearn_heldout_by_lr"] for model in ("after", "reference"))
    decision = decide(evaluation["before"], evaluation["after"], evaluation["base"], evaluation["reference"], True,
                      dict.fromkeys(REQUIRED_LINEAGE, "x"), params.gate, spared=[ANCHOR])
    assert not decision.passed
    failed = {c.name for c in decision.checks if c.passed is False}
    assert failed & {"reelicitation", "relearning"}, decision.reasons


def test_exact_unlearning_passes_the_same_audit(request_dir, tiny_world):
    params, plan = request_dir["params"], request_dir["plan"]
    heldout = load_qa_file(plan.mine_dir / "audit_set.jsonl", "audit set")
    attacks = attack_rows(load_qa_file(plan.mine_dir / "forget_set.jsonl", "forget set"), params.audit.relearn_rows,
                          params.audit.seed, params.audit.relearn_attacks)
    from lethe.data import author_qa
    from lethe.mining.graph import load_graph
    from lethe.supervision.baselines import author_index

    gold = [(qa.question, qa.answer) for qa in author_qa(author_index(ANCHOR))]
    graph = load_graph(plan.mine_dir / "graph.json")

    def measure(path, full=True):
        backend = load_plain(path, None, "cpu", params.backend.batch_size)
        return public(audit_model(backend, params, ANCHOR, graph if full else None, heldout, attacks, gold, full))

    before = measure(plan.start_model, full=False)
    gone = measure(tiny_world["retain_model_path"])  # retrained without the author
    checks = {c.name: c for c in forgetting_checks(before, gone, gone, params.gate)}
    assert checks["reelicitation"].passed and checks["relearning"].passed, checks
    # held-out: a pass, or (probes mined from the tiny world's samples may score near the reference
    # before unlearning already) a marked n/a; never a failure for the model that never saw the author
    assert checks["heldout_forgetting"].passed or (checks["heldout_forgetting"].passed is None
                                                   and "cannot show forgetting" in checks["heldout_forgetting"].note)
    hidden = measure(plan.start_model)  # the untouched model, for contrast: everything comes back
    checks = {c.name: c for c in forgetting_checks(before, hidden, gone, params.gate)}
    assert not any(checks[name].passed for name in ("reelicitation", "relearning")), checks
