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
