"""Helpers shared by the benchmark scripts: machine facts, JSON output, forget sets of a split."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    import torch

    cuda = torch.cuda.is_available()
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": cuda, "gpu": torch.cuda.get_device_name(0) if cuda else None, "platform": platform.platform()}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def built_world(output_dir: str | Path, size: str = "default") -> dict:
    """The record of the world `size` built under ROOT / output_dir, its model paths usable from any working
    directory (lethe.world.build.read_record); a clear error where it is not built."""
    from lethe.errors import ModelNotFoundError
    from lethe.world.build import read_record

    record = read_record(ROOT / output_dir / size)
    if record is None:
        raise ModelNotFoundError(f"the '{size}' world is not built: run `lethe world build --size {size}`")
    return record


def write_result(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=1, default=float))
    print(f"wrote {path}", file=sys.stderr)
    return path


def stored_requests(run: Path) -> Iterator[tuple[str, Path]]:
    """(anchor, work folder) of each request a `bench/audit.py` run left an adapter for, by folder name."""
    for work in sorted(run.glob("*/from-base")):
        if (work / "unlearn" / "adapter" / "adapter_config.json").is_file():
            yield json.loads((work / "mine" / "request.json").read_text())["anchor"], work


def assign(raw: dict, assignments: Sequence[str]) -> dict:
    """KEY.PATH=YAML assignments (`--set unlearn.max_steps=80`) applied to a params mapping, in place."""
    import yaml

    for assignment in assignments:
        key, value = assignment.split("=", 1)
        *path, last = key.split(".")
        node = raw
        for part in path:
            node = node.setdefault(part, {})  # a section params.yaml does not list yet (a method's)
        node[last] = yaml.safe_load(value)
    return raw


def write_set(path: Path, rows) -> Path:
    """QA samples as JSONL."""
    path.write_text("".join(json.dumps(r.to_dict()) + "\n" for r in rows))
    return path


# Elicitation, scoring and expansion do not depend on the forget-set source: the baselines reuse
# MAGE's graph (their neighbor sets come from it) instead of mining the same anchor again.
def _share_mining(mage_dir: Path, workdir: Path) -> None:
    from lethe.layout import STEP_IO, MineLayout

    source, target = MineLayout(mage_dir), MineLayout(workdir)
    if target.graph.is_file() or not source.graph.is_file():
        return
    workdir.mkdir(parents=True, exist_ok=True)
    for step in ("elicit", "score", "expand"):
        for role in (*STEP_IO[step].writes, *STEP_IO[step].metrics):
            if getattr(source, role).is_file():
                shutil.copy2(getattr(source, role), getattr(target, role))


def mine_sets(params, model: Path, names: Sequence[str], sources: Sequence[str], work: Path) -> tuple[dict, Path, dict]:
    """Each source's forget set over all `names` (one MAGE pipeline run per author and source, cached
    under `work`), MAGE's neighbor sets together as one file, and each run's status and seconds."""
    from lethe.mage import MagePipeline, Request, load_samples, request_slug

    sets: dict[str, list] = {s: [] for s in sources}
    neighbors, mining = [], {}
    for name in names:
        for source in dict.fromkeys(("mage", *sources)):
            workdir = work / request_slug(name) / source
            if source != "mage":
                _share_mining(work / request_slug(name) / "mage", workdir)
            start = time.perf_counter()
            out = MagePipeline(Request(name, str(model.resolve()), source), workdir, params).run()
            mining[f"{name}/{source}"] = {"status": out["status"], "seconds": time.perf_counter() - start}
            if source in sets and out["forget_set_path"]:
                sets[source] += load_samples(Path(out["forget_set_path"]))
            if source == "mage" and out["neighbor_set_path"]:
                neighbors += load_samples(Path(out["neighbor_set_path"]))
    return sets, write_set(work / "neighbor_set.jsonl", neighbors), mining


def fresh_request_root(name: str, mlflow_port: int, s3_port: int, params: Path | None = None) -> Path:
    """artifacts/bench/<name> emptied (its stack stopped first) with a params.yaml of its own queue,
    registry work folder, DVC store and local stack, so earlier requests do not compose into it.
    `params` (default: the project's) may be an overlay such as profiles/thorough.yaml."""
    import subprocess

    import yaml

    root = ROOT / "artifacts" / "bench" / name
    if (root / "params.yaml").is_file():  # a stack left by an earlier run of this benchmark
        subprocess.run([sys.executable, "-m", "lethe", "stack", "down", "--params", str(root / "params.yaml")],
                       cwd=ROOT, capture_output=True, check=False)
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    from lethe.config import params_mapping

    raw = params_mapping(params or ROOT / "params.yaml")
    raw["registry"].update(queue_url=f"sqlite:///{root / 'queue.db'}", workdir=str(root / "requests"),
                           dvc_store=str(root / "dvc-store"), compliance_dir=str(root / "compliance"))
    raw["stack"].update(state_dir=str(root / "stack"), mlflow_port=mlflow_port, s3_port=s3_port,
                        prefect_port=mlflow_port + 2)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    return root


def stack_up_unscheduled(params: Path) -> dict:
    """`lethe stack up` with the nightly compliance deployment paused: a benchmark runs the queue itself,
    and the schedule firing mid-measurement would share the queue and the cores with it."""
    from lethe.ops.prefect_service import pause_deployment

    info = run_lethe(params, "stack", "up")
    if info.get("prefect_api_url"):
        pause_deployment(info["prefect_api_url"])
    return info


def run_lethe(params: Path, *args: str) -> dict:
    """`lethe <args> --params <params> --json` from the project root: its JSON result (stderr appended to
    <params folder>/<command>.stderr.log); exits with the command's last words when it fails."""
    import subprocess

    argv = [sys.executable, "-m", "lethe", *args, "--params", str(params), "--json"]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    with (params.parent / f"{args[0]}.stderr.log").open("a") as log:
        log.write(done.stderr)
    if done.returncode != 0:
        raise SystemExit(f"lethe {' '.join(args)} failed: {done.stderr[-1500:]}")
    return json.loads(done.stdout)

