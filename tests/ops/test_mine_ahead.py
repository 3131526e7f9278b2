"""Mining ahead (lethe.ops.mine_ahead): what a request adopts, and what it never adopts. On hand-made
folders; the compliance run that mines ahead on Dask is tested on the tiny world in
tests/pipeline/test_compliance_on_worker.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lethe.layout import MineLayout
from lethe.ops import mine_ahead
from lethe.ops.request_steps import RequestPlan


@pytest.fixture
def workspace(tmp_path, params):
    params = params.model_copy(update={"registry": params.registry.model_copy(update={"workdir": str(tmp_path)})})
    plan = RequestPlan("req-1", "Jane Doe", None, "/models/base", "/composed/abc/model", "m",
                       str(tmp_path / "req-1" / "from-abc"), "", "")
    return params, plan


def _mined_folder(root: Path, model: str) -> MineLayout:
    """A finished mining folder as MagePipeline leaves it (its files' contents do not matter here)."""
    folder = MineLayout(root)
    folder.validation.parent.mkdir(parents=True)
    folder.request.write_text(json.dumps({"anchor": "Jane Doe", "model_path": model, "source": "mage",
                                          "description": None}))
    folder.forget_set.write_text('{"question": "q", "answer": "a"}\n')
    folder.validation.write_text(json.dumps({"success": True, "data_docs": str(root / "validation" / "index.html")}))
    return folder


def _mark(params, plan: RequestPlan, source: MineLayout, status: str = "validated") -> None:
    marker = mine_ahead.marker_path(params.registry.workdir, plan.request_id)
    marker.write_text(json.dumps({"mine_dir": str(source.root), "mine_model": "/models/base", "champion": None,
                                  "status": status}))


def test_a_request_adopts_the_folder_mined_ahead_on_an_older_champion(workspace):
    params, plan = workspace
    source = _mined_folder(Path(params.registry.workdir) / "req-1" / "from-base" / "mine", "/models/base")
    _mark(params, plan, source)

    assert mine_ahead.adopt(params, plan) == "/models/base"
    assert plan.mine.forget_set.read_text() == source.forget_set.read_text()
    docs = json.loads(plan.mine.validation.read_text())["data_docs"]
    assert docs == str(plan.mine.validation_dir / "index.html")  # its own copy, not the source folder's
    assert not plan.mine.root.with_name("mine.partial").exists()
    # Run again (a resumed request): the folder is the request's now, and still says where it was mined.
    source.forget_set.write_text("changed since\n")
    assert mine_ahead.adopt(params, plan) == "/models/base"
    assert plan.mine.forget_set.read_text() != "changed since\n"


def test_nothing_is_adopted_without_a_finished_mining_ahead(workspace):
    params, plan = workspace
    assert mine_ahead.adopt(params, plan) is None  # no marker: the request mines by itself
    source = _mined_folder(Path(params.registry.workdir) / "req-1" / "from-base" / "mine", "/models/base")
    _mark(params, plan, source, status="incomplete")
    assert mine_ahead.adopt(params, plan) is None and not plan.mine.root.exists()


def test_a_folder_mined_ahead_in_place_is_the_requests_own(workspace):
    """The request's champion did not move since the run began: nothing to copy, nothing to record."""
    params, plan = workspace
    here = _mined_folder(plan.mine.root, plan.start_model)
    _mark(params, plan, here)
    assert mine_ahead.adopt(params, plan) is None


def test_a_mining_that_fails_ahead_leaves_no_marker(workspace):
    """The run-start champion's model cannot be loaded: the failure is a row, not an exception, and
    the request later mines (or resumes the steps begun) by itself."""
    params, plan = workspace
    job = mine_ahead.MiningJob("req-1", "Jane Doe", None, plan.start_model, str(plan.mine.root))
    row = mine_ahead.mine(params, job)
    assert row["status"] == "failed" and plan.start_model in row["error"]
    assert not mine_ahead.marker_path(params.registry.workdir, "req-1").exists()
    assert mine_ahead.adopt(params, plan) is None


def _record(request_id: str, anchor: str, model: str):
    from lethe.ops.queue import RequestRecord

    return RequestRecord(request_id, anchor, model, None, None, "tester", "test", "pending", "", "", 0, None)


def test_the_plan_mines_from_each_models_champion_and_skips_what_it_cannot(tmp_path, params):
    """Against a real MLflow store (SQLite, no server): a model without a champion is mined from its
    base, a request already mined from that champion is skipped, and a model whose champion cannot
    be composed is skipped with the reason its own request will fail on."""
    from lethe.ops import registry
    from lethe.ops.environment import OpsEnv
    from lethe.ops.request_steps import model_name_for

    params = params.model_copy(update={"registry": params.registry.model_copy(
        update={"workdir": str(tmp_path / "requests"), "model_prefix": "t-"})})
    env = OpsEnv(f"sqlite:///{tmp_path / 'mlflow.db'}", "", "", "", None, "")
    plain, broken = str(tmp_path / "plain-model"), str(tmp_path / "broken-model")
    client = registry.client(env.tracking_uri)
    name = model_name_for(broken, "t-")
    client.create_registered_model(name)
    version = client.create_model_version(name, source=str(tmp_path), tags={
        "lineage.adapter_chain": json.dumps([str(tmp_path / "adapter-gone")])})
    client.set_registered_model_alias(name, registry.CHAMPION, version.version)
    done = MineLayout(tmp_path / "requests" / "req-done" / "from-base" / "mine")
    done.validation.parent.mkdir(parents=True)
    done.validation.write_text("{}")

    jobs, skipped = mine_ahead.plan_mining(params, env, [
        _record("req-a", "Jane Doe", plain), _record("req-done", "John Roe", plain),
        _record("req-b", "Ann Poe", broken)])

    assert jobs == [mine_ahead.MiningJob("req-a", "Jane Doe", None, plain,
                                         str(tmp_path / "requests" / "req-a" / "from-base" / "mine"))]
    reasons = {s["request_id"]: s["reason"] for s in skipped}
    assert reasons["req-done"] == "already mined from this champion"
    assert "adapter-gone" in reasons["req-b"] and "missing" in reasons["req-b"]
