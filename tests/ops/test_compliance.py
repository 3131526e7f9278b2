"""The compliance re-audit's verdict per entity, on hand-made measurements (the measuring itself runs
for real in tests/pipeline/test_unlearn_request.py)."""

from __future__ import annotations

import json

import pytest

from lethe.config import load_params
from lethe.ops import compliance
from lethe.ops.compliance import AuditPlan, audit_entity, write_report

ANCHOR = "Ada Vale"


class _Models:
    def get(self, path):
        return path


@pytest.fixture
def measured(monkeypatch):
    """audit_entity with the models' answers replaced: base recall 0.8, champion 0.05, nothing re-elicited,
    no never-trained reference."""
    import lethe.evaluate.audit as audit

    monkeypatch.setattr(audit, "audited_graph", lambda *args: None)
    monkeypatch.setattr(audit, "reelicit", lambda *args: {"return": 0.0})
    monkeypatch.setattr(audit, "recall", lambda model, heldout, tokens: 0.8 if model == "base" else 0.05)
    monkeypatch.setattr(compliance, "reference_model_for", lambda anchor, base: None)


def _entity(tmp_path, probes: int) -> dict:
    rows = [{"question": f"Q{i}?", "answer": f"A{i}.", "kind": "forget", "source": "mage"} for i in range(probes)]
    audit_set = tmp_path / "audit_set.jsonl"
    audit_set.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"anchor": ANCHOR, "request_id": "req-1", "version": "1", "graph": str(tmp_path / "graph.json"),
            "audit_set": str(audit_set)}


PLAN = AuditPlan("lethe-m", "1", "base", "champion", ("req-1",), ())


@pytest.mark.parametrize("probes, forgotten", [(2, False), (3, True)])
def test_an_entity_is_forgotten_only_on_enough_held_out_probes(measured, tmp_path, probes, forgotten):
    params = load_params()
    assert params.gate.min_heldout_probes == 3
    row = audit_entity(params, PLAN, _entity(tmp_path, probes), _Models())
    assert row["ratio"] == pytest.approx(0.05 / 0.8) and row["questions"] == probes
    assert row["forgotten"] is forgotten and row["too_few_questions"] is not forgotten
    audit = {"model_name": "lethe-m", "champion": "1", "entities": [row]}
    text = write_report(tmp_path / "report", [], audit).read_text()
    assert f"0.800 -> 0.050 on {probes}" in text
    assert ("(too few to judge)" in text) is not forgotten


def test_the_champion_must_still_recognize_every_entity_it_keeps(tiny_world, params, tmp_path, monkeypatch):
    """audit_kept on real models: the base model as its own champion keeps every author (1.0x); a champion
    that no longer names one author is flagged, and the report says so; the audited anchors are spared.
    The base model's answers come from the score cache the second time."""
    from lethe.llm.cache import ModelCache

    params = params.model_copy(update={"registry": params.registry.model_copy(update={"workdir": str(tmp_path)})})
    model = tiny_world["model_path"]
    forgotten = tiny_world["authors"][0]["name"]
    entity = {"anchor": forgotten, "request_id": "req-1", "version": "1", "graph": "g", "audit_set": "a"}
    plan = AuditPlan("lethe-m", "1", model, model, ("req-1",), (entity,))
    kept = compliance.audit_kept(params, plan, ModelCache(params.backend))
    others = {a["name"] for a in tiny_world["authors"]} - {forgotten}
    assert kept["kept"] is True and kept["value"] == 1.0 and kept["entities"] == len(others)
    assert kept["recognition_by_entity"].keys() == others
    assert compliance.summarize_audit(plan, [], kept)["all_kept"]

    import shutil

    import lethe.evaluate.recognition as recognition

    real, victim, champion = recognition.entity_recognition, sorted(others)[0], str(tmp_path / "champion")
    shutil.copytree(model, champion)
    models = ModelCache(params.backend)

    base_rows_cached = []

    def champion_forgets_victim(backend, prompts, tokens):  # the copy's answers, one author's names struck out
        shares = real(backend, prompts, tokens)
        if backend is models.get(champion):
            return {**shares, victim: 0.0}
        base_rows_cached.append(backend.hits)
        return shares

    monkeypatch.setattr(recognition, "entity_recognition", champion_forgets_victim)
    broken = compliance.audit_kept(params, AuditPlan("lethe-m", "1", model, champion, ("req-1",), (entity,)), models)
    assert broken["kept"] is False and broken["value"] == 0.0 and victim in broken["note"]
    assert base_rows_cached == [len(others) * len(params.elicit.prompts)]
    audit = compliance.summarize_audit(plan, [], broken)
    assert not audit["all_kept"]
    text = write_report(tmp_path / "report", [], audit).read_text()
    assert "still recognized: NO" in text and victim in text


def test_nothing_to_keep_is_not_a_failure_without_a_champion(params, tiny_world):
    plan = AuditPlan("lethe-m", None, tiny_world["model_path"], tiny_world["model_path"], (), ())
    kept = compliance.audit_kept(params, plan, _Models())
    assert kept["kept"] is None and kept["note"] == "no champion"
    assert compliance.summarize_audit(plan, [], kept)["all_kept"]
