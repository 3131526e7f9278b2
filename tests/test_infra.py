"""The production files under infra/ agree with the code and with each other (no container
runtime here, so they are validated, not run): every port on loopback, images pinned to the
versions Lethe is tested with, Lethe's workers given every location the header tells a user to
export, the Dask address valid for Lethe, the work pool the deployments use, the databases the
URLs name."""

import re
from pathlib import Path

import pytest
import yaml

from lethe.config import ScaleParams
from lethe.pipeline.scale import dask_address

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "infra" / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
PINS = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#"))
LETHE_SERVICES = [name for name, s in SERVICES.items() if s.get("build", {}).get("dockerfile") == "infra/Dockerfile"]


def test_every_published_port_is_on_loopback():
    ports = [p for s in SERVICES.values() for p in s.get("ports", [])]
    assert ports and all(p.startswith("127.0.0.1:") for p in ports), ports


@pytest.mark.parametrize("service, package", [("mlflow", "mlflow"), ("prefect", "prefect"), ("dask-scheduler", "dask")])
def test_images_are_the_versions_lethe_pins(service, package):
    assert PINS[package].strip() in SERVICES[service]["image"]


def test_lethe_workers_get_every_location_the_header_exports():
    header = (ROOT / "infra" / "compose.yaml").read_text().split("services:")[0]
    exported = set(re.findall(r"\b([A-Z][A-Z0-9_]+)=", header))
    assert {"LETHE_TRACKING_URI", "LETHE_QUEUE_URL", "LETHE_DASK_ADDRESS", "PREFECT_API_URL"} <= exported
    assert set(LETHE_SERVICES) == {"dask-worker", "prefect-worker"}
    for name in LETHE_SERVICES:
        assert exported <= set(SERVICES[name]["environment"]), (name, exported - set(SERVICES[name]["environment"]))


def test_the_dask_address_reaches_the_scheduler_and_lethe_accepts_it(monkeypatch):
    env = SERVICES["prefect-worker"]["environment"]
    monkeypatch.setenv("LETHE_DASK_ADDRESS", env["LETHE_DASK_ADDRESS"])
    address = dask_address(ScaleParams())
    host, port = address.removeprefix("tcp://").split(":")
    assert host in SERVICES and f"--port {port}" in SERVICES[host]["command"]
    assert address in SERVICES["dask-worker"]["command"]


def test_the_prefect_workers_serve_the_deployments_pool():
    pools = {d["work_pool"]["name"] for d in yaml.safe_load((ROOT / "prefect.yaml").read_text())["deployments"]}
    assert pools == {"lethe-process"}
    assert "--pool lethe-process" in SERVICES["prefect-worker"]["command"]


def test_the_databases_the_urls_name_exist():
    init = (ROOT / "infra" / "postgres-init.sql").read_text()
    created = set(re.findall(r"CREATE DATABASE (\w+);", init)) | {SERVICES["postgres"]["environment"]["POSTGRES_DB"]}
    text = (ROOT / "infra" / "compose.yaml").read_text()
    named = set(re.findall(r"postgres(?:ql)?(?:\+\w+)?://[^@\s]+@[\w.-]+:5432/(\w+)", text))
    assert named and named <= created, named - created


def test_the_worker_image_copies_what_exists_and_keeps_telemetry_off():
    dockerfile = (ROOT / "infra" / "Dockerfile").read_text()
    for sources in re.findall(r"^COPY (.+) \S+$", dockerfile, flags=re.M):
        for source in sources.split():
            assert (ROOT / source).exists(), source
    makefile = (ROOT / "Makefile").read_text()
    for variable in re.findall(r"^export (\w+) :=", makefile, flags=re.M):
        assert f"{variable}=" in dockerfile, variable
