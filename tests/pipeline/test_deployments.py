"""prefect.yaml: the scheduled compliance run and the other deployments point at real flows."""

import importlib
from pathlib import Path

import yaml


def test_deployments_resolve_to_flows_with_a_schedule():
    spec = yaml.safe_load(Path("prefect.yaml").read_text())
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert {"compliance-run", "build-world", "benchmark"} <= set(deployments)
    for deployment in deployments.values():
        module, name = deployment["entrypoint"].removesuffix(".py").replace("/", ".").split(":")
        flow = getattr(importlib.import_module(module.replace(".py", "")), name)
        assert hasattr(flow, "serve") and deployment["work_pool"]["name"] == "lethe-process"
    schedule = deployments["compliance-run"]["schedules"][0]
    assert schedule["cron"] == "0 2 * * *" and schedule["timezone"] == "UTC" and schedule["active"] is True
    assert schedule["slug"]
    from prefect.client.schemas.schedules import CronSchedule

    assert CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"]).cron == "0 2 * * *"


def test_the_benchmark_flow_finds_its_scripts():
    from lethe.pipeline.flows.benchmark import BENCHMARKS, ROOT

    assert all((ROOT / command[0]).is_file() for command in BENCHMARKS.values())


def test_no_task_reads_the_params_file():
    """Flows read params.yaml once and hand the same Params object to every task, so the lineage's
    params hash describes what every step used (an edit mid-run changes nothing in that run)."""
    import ast
    import inspect

    import lethe.pipeline.tasks as tasks
    from lethe.config import Params

    folder = Path(tasks.__file__).parent
    for path in folder.glob("*.py"):
        names = {n.id for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Name)}
        assert "load_params" not in names, path.name
    from lethe.pipeline.tasks import elicit, request_ops

    for task in (elicit.elicit, request_ops.unlearn, request_ops.evaluate, request_ops.register):
        assert inspect.signature(task.fn).parameters["params"].annotation in (Params, "Params")
