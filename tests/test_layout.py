"""The mining folder's layout and the MAGE steps' declared inputs and outputs, against dvc.yaml and
against a real `dvc repro` on the tiny world."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from lethe.layout import STEP_IO, STEPS, MineLayout, RequestLayout
from lethe.mage import MagePipeline, Request

ROOT = Path(__file__).resolve().parent.parent
WORKDIR = "${request.workdir}"
MODEL = "artifacts/world/${request.world}/model"


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _paths(entries) -> set[str]:
    return {next(iter(e)) if isinstance(e, dict) else e for e in entries or []}


def _file(role: str) -> str:
    return f"{WORKDIR}/{MineLayout.file_name(role)}"


def test_layout_names_every_file_and_refuses_unknown_roles(tmp_path):
    files = MineLayout(tmp_path)
    assert files.forget_set == tmp_path / "forget_set.jsonl"
    assert files.validation == tmp_path / "validation" / "validation.json"
    assert MineLayout.beside(files.forget_set) == files
    with pytest.raises(KeyError, match="no file called 'forget'"):
        MineLayout.file_name("forget")
    for io in STEP_IO.values():
        for role in (*io.reads, *io.writes, *io.metrics, io.done):
            MineLayout.file_name(role)


def test_the_request_layout_names_its_folders_and_reports(tmp_path):
    files = RequestLayout(tmp_path)
    assert files.mine == MineLayout(tmp_path / "mine") and files.mine.forget_set == tmp_path / "mine" / "forget_set.jsonl"
    assert files.unlearn_report == tmp_path / "unlearn" / "unlearn.json"
    assert files.sbu_report == tmp_path / "sbu" / "sbu_report.json" and files.evaluation_dir == tmp_path / "evaluation"


def test_every_step_reads_only_what_an_earlier_step_writes():
    written: set[str] = set()
    for step in STEPS:
        io = STEP_IO[step]
        assert set(io.reads) <= written, (step, set(io.reads) - written)
        outputs = [MineLayout.file_name(r) for r in io.writes]
        assert any(MineLayout.file_name(io.done).startswith(o) for o in outputs), step  # done marker is an output
        written |= {*io.writes, *io.metrics, io.done}


@pytest.mark.parametrize("step", STEPS)
def test_dvc_stage_declares_what_the_step_reads_writes_and_depends_on(step):
    stage, io = stages()[step], STEP_IO[step]
    deps = _paths(stage["deps"])
    assert {_file(r) for r in io.reads} <= deps, f"{step}: dvc.yaml misses inputs"
    assert (MODEL in deps) == io.model, f"{step}: the model dependency"
    assert _paths(stage.get("outs")) == {_file(r) for r in io.writes}, f"{step}: outs"
    assert _paths(stage.get("metrics")) == {_file(r) for r in io.metrics}, f"{step}: metrics"
    params = set(stage["params"])
    assert set(io.params) | {"request"} <= params, f"{step}: params {set(io.params) - params}"
    assert f"--workdir {WORKDIR}" in stage["cmd"] and f"--model {MODEL}" in stage["cmd"]
    assert "--params params.yaml" in stage["cmd"]  # the repository's params, not the installed package's
    assert f"lethe step {step} " in stage["cmd"]


def test_no_stage_names_a_request_path_by_hand():
    text = (ROOT / "dvc.yaml").read_text()
    assert not re.search(r"artifacts/dvc/request|artifacts/world/default", text)


def test_the_pipeline_marks_a_step_done_by_its_declared_output(tmp_path, params):
    pipeline = MagePipeline(Request("Nobody Inparticular", str(tmp_path / "model")), tmp_path / "w", params)
    for step in STEPS:
        assert not pipeline.done(step)
        marker = getattr(pipeline.files, STEP_IO[step].done)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text("{}")
        assert pipeline.done(step)


# -- a real DVC run on the tiny world --------------------------------------------------------------
def _dvc(cwd: Path, *args: str) -> str:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    done = subprocess.run(["dvc", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout + done.stderr


def _ran(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([a-z@]+)'", log))


def test_dvc_repro_after_an_expand_param_reruns_expand_and_below_only(tiny_world, params, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy2(ROOT / name, repo / name)
    shutil.copytree(ROOT / "lethe", repo / "lethe", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "data", repo / "data")
    shutil.copytree(Path(tiny_world["model_path"]).parent, repo / "artifacts" / "world" / "tiny")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["request"].update(world="tiny", anchor="Basil Mahfouz Al-Kuwaiti", workdir="artifacts/dvc/request")
    raw["elicit"]["samples"] = raw["expand"]["samples"] = 4  # small and fast; the DAG is what is under test
    raw["expand"]["hops"] = 1
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    _dvc(repo, "init", "--no-scm", "-q")

    first = _ran(_dvc(repo, "repro", "validate"))
    assert set(STEPS) <= first
    files = MineLayout(repo / "artifacts" / "dvc" / "request")
    upstream = {p: p.stat().st_mtime_ns for p in (files.responses_hop0, files.graph_seed)}

    assert _ran(_dvc(repo, "repro", "validate")) == set()  # nothing changed: nothing runs
    raw["expand"]["samples"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    second = _ran(_dvc(repo, "repro", "validate"))
    assert "expand" in second and not second & {"elicit", "score"}
    assert {p: p.stat().st_mtime_ns for p in upstream} == upstream
    assert "synthesize" in second  # responses.jsonl changed with the number of samples
    assert "up to date" in _dvc(repo, "status", "validate")
