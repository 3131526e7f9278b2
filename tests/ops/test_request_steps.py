"""A resumed request reuses a finished evaluation only when nothing it depends on changed (logic only:
the evaluation itself is replaced by a counter; the fault suite resumes real requests)."""

from __future__ import annotations

import pytest

from lethe.evaluate import runner
from lethe.ops import request_steps
from lethe.ops.request_steps import EVALUATION_RECORD, RequestPlan, evaluate_step


@pytest.fixture
def setup(tmp_path, monkeypatch, params):
    plan = RequestPlan("req-1", "Bo Li", None, "base", "start", "lethe-m", str(tmp_path / "req-1"), "file:///x", "run")
    plan.mine_dir.mkdir(parents=True)
    plan.mine.forget_set.write_text('{"question": "q", "answer": "a"}\n')
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_model.safetensors").write_bytes(b"weights-1")
    calls = []

    def evaluate_now(params, plan, adapter, shards=None):
        calls.append(adapter)
        return {"after": {"forget": 0.25, "rows": (1, 2)}, "report_path": str(plan.files.evaluation_dir / "r.md")}

    monkeypatch.setattr(request_steps, "_evaluate_now", evaluate_now)
    return plan, adapter, calls, params


def test_a_finished_evaluation_is_reused_on_resume(setup):
    plan, adapter, calls, params = setup
    first = evaluate_step(params, plan, str(adapter))
    assert first == {"after": {"forget": 0.25, "rows": [1, 2]}, "report_path": first["report_path"]}  # JSON form
    assert evaluate_step(params, plan, str(adapter)) == first and len(calls) == 1
    assert (plan.files.evaluation_dir / EVALUATION_RECORD).is_file()


@pytest.mark.parametrize("change", ["adapter", "supervision", "audit settings", "starting model"])
def test_anything_it_depends_on_changed_means_a_new_evaluation(setup, change):
    plan, adapter, calls, params = setup
    evaluate_step(params, plan, str(adapter))
    if change == "adapter":
        (adapter / "adapter_model.safetensors").write_bytes(b"weights-2")
    elif change == "supervision":
        plan.mine.audit_set.write_text('{"question": "held out", "answer": "b"}\n')
    elif change == "audit settings":
        params = params.model_copy(update={"audit": params.audit.model_copy(update={"relearn_steps": 99})})
    else:
        plan = RequestPlan(**{**plan.to_dict(), "start_model": "champion-2"})
    evaluate_step(params, plan, str(adapter))
    assert len(calls) == 2


def test_an_unreadable_record_is_redone_not_fatal(setup):
    plan, adapter, calls, params = setup
    plan.files.evaluation_dir.mkdir(parents=True)
    (plan.files.evaluation_dir / EVALUATION_RECORD).write_text('{"key": "trunc')
    assert evaluate_step(params, plan, str(adapter))["after"]["forget"] == 0.25 and len(calls) == 1
    assert evaluate_step(params, plan, str(adapter)) and len(calls) == 1  # rewritten whole, then reused


def test_shards_measured_elsewhere_are_combined_not_measured_again(tmp_path, monkeypatch, params):
    """The evaluation takes the shards a Dask fan-out measured and measures only what is missing; the
    record says where each shard was measured. (Logic only: shards and the combination's inputs are
    faked; tests/pipeline/test_compliance_on_worker.py runs them on a real cluster.)"""
    plan = RequestPlan("req-2", "Bo Li", None, "base", "start", "lethe-m", str(tmp_path / "req-2"), "file:///x", "run")
    # No reference model: four shards, the longest (the suite with the adapter) first.
    assert request_steps.evaluation_shard_names(plan) == ["suite:after", "suite:before", "audit:after", "audit:before"]
    measured = []
    inputs = {"heldout_rows": 1, "attack_rows": 0, "attacks": 0, "attack_skipped": None}

    def shards(params, plan, adapter, names):
        measured.extend(names)
        return {name: {"metrics": {"forget": 0.9}, "targets": [], "row_rouge": {}} if name.startswith("suite:")
                else {"recall": 0.5, runner.AUDIT_INPUTS: inputs} for name in names}

    monkeypatch.setattr(request_steps, "evaluation_shards", shards)
    monkeypatch.setattr(request_steps, "base_reference", lambda *args: {"entity_rouge_now": {}})
    monkeypatch.setattr("lethe.evaluate.report.write_report", lambda *args, **kwargs: {"report_path": "r.md"})
    given = {"suite:after": {"metrics": {"forget": 0.2}, "targets": [], "row_rouge": {},
                             request_steps.MEASURED_BY: "host:11"},
             "audit:after": {"recall": 0.0, runner.AUDIT_INPUTS: inputs, request_steps.MEASURED_BY: "host:12"}}
    evaluation = request_steps._evaluate_now(params, plan, "adapter", given)
    assert measured == ["suite:before", "audit:before"]
    assert evaluation["shards"] == {"suite:after": "host:11", "suite:before": "in-process",
                                    "audit:after": "host:12", "audit:before": "in-process"}
    assert evaluation["before"]["forget"] == 0.9 and evaluation["before"]["recall"] == 0.5
    assert evaluation["after"]["forget"] == 0.2 and evaluation["after"]["recall"] == 0.0
    assert request_steps.MEASURED_BY not in evaluation["after"]  # worker ids never become metrics


def test_an_unknown_shard_is_a_clear_error(tmp_path, params):
    plan = RequestPlan("req-3", "Bo Li", None, "base", "start", "lethe-m", str(tmp_path / "req-3"), "file:///x", "run")
    with pytest.raises(request_steps.LetheError, match="no evaluation shard 'audit-after'"):
        request_steps.evaluation_shard(params, plan, "adapter", "audit-after")


def test_a_chained_request_is_judged_against_the_base_models_recognition_kept_in_its_cache(tmp_path, params,
                                                                                            tiny_world):
    """A request from the base takes the base's recognition from its own `before`; a request from a
    champion reads it from the cache, and what the cache lacks is measured on the real base model."""
    from lethe.evaluate import metrics as M
    from lethe.evaluate.recognition import entity_recognition, recognition_prompts
    from lethe.llm.backend import Backend

    cfg = params.model_copy(update={"registry": params.registry.model_copy(update={"workdir": str(tmp_path)})})
    base, (first, second) = tiny_world["model_path"], [a["name"] for a in tiny_world["authors"][:2]]
    from_base = RequestPlan("req-4", "Bo Li", None, base, base, "lethe-m", str(tmp_path / "req-4"), "file:///x", "run")
    assert request_steps.base_recognition(cfg, from_base, {M.ENTITY_RECOGNITION: {first: 0.25}}, {first: 0.0}) == {
        first: 0.25}
    chained = RequestPlan("req-5", "Bo Li", None, base, str(tmp_path / "champion"), "lethe-m", str(tmp_path / "req-5"),
                          "file:///x", "run")
    eroded = {M.ENTITY_RECOGNITION: {first: 0.0, second: 0.0}}  # the champion's: never the reference
    judged = request_steps.base_recognition(cfg, chained, eroded, {first: 0.1, second: 0.1})
    measured = entity_recognition(Backend.load(base, "cpu"), recognition_prompts([second], params.elicit.prompts),
                                  params.evaluate.max_new_tokens)
    assert judged == {first: 0.25, second: measured[second]} and measured[second] > 0


def test_the_base_models_cache_is_never_read_half_written_while_two_requests_write_it(tmp_path):
    import threading

    path = tmp_path / "_base" / "key.json"
    cache = {"row_rouge": {f"What is fact {i}?": ["Ada Vale", 0.5] for i in range(5000)}}
    stop, failures = threading.Event(), []

    def write_until_stopped():
        try:
            while not stop.is_set():
                request_steps._save_base_cache(path, cache)
        except Exception as error:  # noqa: BLE001 - a writer's failure is the test's verdict
            failures.append(error)

    writers = [threading.Thread(target=write_until_stopped) for _ in range(2)]
    for writer in writers:
        writer.start()
    try:
        for _ in range(100):
            assert request_steps._load_base_cache(path)["row_rouge"] in ({}, cache["row_rouge"])
    finally:
        stop.set()
        for writer in writers:
            writer.join()
    assert not failures and sorted(p.name for p in path.parent.iterdir()) == ["key.json"]
