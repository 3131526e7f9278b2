"""Batched requests (lethe.ops.batch): the merged supervision, the batch's identity and metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lethe.config import load_params
from lethe.errors import LetheError
from lethe.layout import MineLayout
from lethe.ops.batch import batch_evaluation, batch_id, merge_supervision, names_any, plan_batch
from lethe.ops.request_steps import RequestPlan


def _row(question: str, answer: str, kind: str = "forget") -> dict:
    return {"question": question, "answer": answer, "kind": kind, "source": "mage"}


def _member(root: Path, request_id: str, anchor: str, neighbors: list[dict], success: bool = True) -> RequestPlan:
    plan = RequestPlan(request_id, anchor, None, "base", "start", "lethe-m", str(root / request_id), "file:///x", "run")
    mine = plan.mine
    mine.validation_dir.mkdir(parents=True)
    rows = {"forget_set": [_row(f"Where was {anchor} born?", "In a town.")],
            "dev_set": [_row(f"What does {anchor} write?", "Novels.")],
            "audit_set": [_row(f"Who are {anchor}'s parents?", "A baker and a nurse.")],
            "neighbor_set": neighbors}
    for name, content in rows.items():
        getattr(mine, name).write_text("".join(json.dumps(r) + "\n" for r in content))
    mine.validation.write_text(json.dumps({"success": success, "sets": {"forget_set": {"success": success}}}))
    return plan


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_merged_supervision_never_teaches_the_batch_to_keep_another_target(tmp_path):
    shared = _row("Who wrote The Tide?", "Carla Diaz.", "neighbor")
    ann = _member(tmp_path, "req-a", "Ann Vale", [shared, _row("Who mentored Bo Li?", "A poet.", "neighbor")])
    bo = _member(tmp_path, "req-b", "Bo Li", [shared, _row("Did Ann Vale win a prize?", "Yes.", "neighbor"),
                                              _row("Where is Lima?", "Peru.", "neighbor")])
    out = MineLayout(tmp_path / "batch")

    stats = merge_supervision([ann, bo], out)

    assert [r["question"] for r in _read(out.forget_set)] == ["Where was Ann Vale born?", "Where was Bo Li born?"]
    assert len(_read(out.dev_set)) == 2 and len(_read(out.audit_set)) == 2
    neighbors = [r["question"] for r in _read(out.neighbor_set)]
    assert neighbors == ["Who wrote The Tide?", "Where is Lima?"]  # deduplicated; rows naming a target dropped
    assert stats == {"forget_rows": 2, "dev_rows": 2, "audit_rows": 2, "neighbor_rows": 2,
                     "neighbor_rows_dropped": 2, "members": 2}
    validation = json.loads(out.validation.read_text())
    assert validation["success"] and set(validation["members"]) == {"req-a", "req-b"}
    assert set(validation["sets"]) == {"forget_set (Ann Vale)", "forget_set (Bo Li)"}


def test_a_member_that_failed_validation_fails_the_batch_validation(tmp_path):
    members = [_member(tmp_path, "req-a", "Ann Vale", []), _member(tmp_path, "req-b", "Bo Li", [], success=False)]
    merge_supervision(members, MineLayout(tmp_path / "batch"))
    assert json.loads((tmp_path / "batch" / "validation" / "validation.json").read_text())["success"] is False


def test_a_batch_without_forget_rows_is_refused(tmp_path):
    member = _member(tmp_path, "req-a", "Ann Vale", [])
    member.mine.forget_set.write_text("")
    with pytest.raises(LetheError, match="no forget rows"):
        merge_supervision([member], MineLayout(tmp_path / "batch"))


def test_names_any_matches_whole_normalized_names():
    assert names_any({"question": "What did ANN  vale write?", "answer": ""}, ["Ann Vale"])
    assert not names_any({"question": "What did Ann write?", "answer": "Vale"}, ["Ann Vale"])


def test_the_batch_identity_ignores_member_order_and_refuses_an_empty_batch():
    assert batch_id(["b", "a"]) == batch_id(["a", "b"]) != batch_id(["a", "c"])
    with pytest.raises(LetheError):
        batch_id([])


def test_members_starting_from_different_champions_cannot_be_batched(tmp_path):
    ann = _member(tmp_path, "req-a", "Ann Vale", [])
    bo = _member(tmp_path, "req-b", "Bo Li", [])
    bo = RequestPlan(**{**bo.to_dict(), "start_model": "other", "parent_version": "3"})
    with pytest.raises(LetheError, match="one champion"):
        plan_batch(load_params(), [ann, bo])


def test_the_batch_evaluation_keys_every_member_and_keeps_each_folder(tmp_path):
    members = [_member(tmp_path, "req-a", "Ann Vale", []), _member(tmp_path, "req-b", "Bo Li", [])]
    for member in members:
        member.files.evaluation_dir.mkdir()
        (member.files.evaluation_dir / "report.md").write_text(member.anchor)
    batch = RequestPlan(**{**members[0].to_dict(), "request_id": "batch-x", "workdir": str(tmp_path / "batch")})
    evaluations = {"req-a": {"before": {"heldout_rouge": 0.6}, "after": {"heldout_rouge": 0.1}, "base": {"u": 1.0}},
                   "req-b": {"before": {"heldout_rouge": 0.5}, "after": {"heldout_rouge": 0.2}}}

    merged = batch_evaluation(batch, members, evaluations)

    assert merged["after"] == {"req-a.heldout_rouge": 0.1, "req-b.heldout_rouge": 0.2}
    assert merged["base"] == {"u": 1.0}
    assert (batch.files.evaluation_dir / "req-b" / "report.md").read_text() == "Bo Li"
    assert json.loads(Path(merged["metrics_path"]).read_text())["members"] == {"req-a": "Ann Vale", "req-b": "Bo Li"}


def test_a_batched_version_names_every_request_it_unlearned():
    """What the re-audit and a rollback read off a version: a batch's members, or the one request."""
    from types import SimpleNamespace

    from lethe.ops.compliance import version_requests

    batched = SimpleNamespace(tags={"lineage.request_id": "batch-1", "lethe.anchor": "Ann Vale; Bo Li",
                                    "lineage.batch_request_ids": '["req-a", "req-b"]',
                                    "lineage.batch_anchors": '["Ann Vale", "Bo Li"]'})
    single = SimpleNamespace(tags={"lineage.request_id": "req-c", "lethe.anchor": "Cy Oz"})
    assert version_requests(batched) == [("req-a", "Ann Vale"), ("req-b", "Bo Li")]
    assert version_requests(single) == [("req-c", "Cy Oz")]


def test_a_batch_trains_with_the_step_budget_of_all_its_members():
    from lethe.ops.batch import batch_params

    params = load_params()
    scaled = batch_params(params, 3)
    assert scaled.unlearn.max_steps == 3 * params.unlearn.max_steps
    assert scaled.unlearn.min_steps == 3 * params.unlearn.min_steps
    assert scaled.unlearn.eval_every == params.unlearn.eval_every
