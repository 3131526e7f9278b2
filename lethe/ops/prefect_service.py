"""The local stack's Prefect server and process worker.

`lethe stack up` starts a Prefect server on loopback (its own SQLite database and PREFECT_HOME
under <state_dir>/prefect, telemetry off), proves it is this stack's server (a Prefect variable
holding the stack's token), applies prefect.yaml's deployments to it (`prefect deploy --all`, with
this stack's service locations filled into the templates), and starts one process worker on the
`lethe-process` pool. The UI then shows flow runs, task runs, artifacts and the nightly
compliance deployment with its schedule, and a deployment run is executed by the worker, not by
the command that asked for it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from lethe.errors import LetheError

POOL = "lethe-process"
COMPLIANCE_DEPLOYMENT = "compliance_run/compliance-run"
IDENTITY_VARIABLE = "lethe_stack_token"
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def home(state_dir: Path) -> Path:
    """PREFECT_HOME of the stack's server and worker."""
    path = state_dir / "prefect"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def api_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/api"


def environment(state_dir: Path, host: str, port: int) -> dict[str, str]:
    """Settings shared by the server, the worker and the commands that talk to them."""
    prefect_home = home(state_dir)
    return {"PREFECT_HOME": str(prefect_home), "PREFECT_API_URL": api_url(host, port),
            "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{prefect_home / 'prefect.db'}",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
            "PREFECT_SERVER_ALLOW_EPHEMERAL_MODE": "false", "PREFECT_UI_API_URL": api_url(host, port)}


def server_command(host: str, port: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]


def worker_command(port: int) -> list[str]:
    """A process worker on the project's pool, named after the server port (how the stack finds it)."""
    return [sys.executable, "-m", "prefect", "worker", "start", "--pool", POOL, "--type", "process",
            "--name", worker_name(port)]


def worker_name(port: int) -> str:
    return f"lethe-worker-{port}"


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


BUSY_STATUSES = (429, 503)  # the server is up but busy (a locked SQLite answers 503): worth asking again
BUSY_RETRIES = 5


def _request(url: str, method: str = "GET", body: dict | None = None, retry_delay: float = 0.5) -> dict | None:
    """One call of the server's REST API: its JSON (None for 404). A busy answer (BUSY_STATUSES) is
    asked again, up to BUSY_RETRIES times with a doubling delay; any other error is a LetheError."""
    data = json.dumps(body).encode() if body is not None else None
    attempt = 0
    while True:
        request = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                text = response.read().decode()
                return json.loads(text) if text else {}
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            if exc.code not in BUSY_STATUSES or attempt == BUSY_RETRIES:
                raise LetheError(f"Prefect server at {url} answered {exc.code}: {exc.read().decode()[:200]}") from exc
            time.sleep(retry_delay * 2 ** attempt)
            attempt += 1


NIGHTLY_DEPLOYMENT = "compliance_run/compliance-run"


def pause_deployment(url: str, name: str = NIGHTLY_DEPLOYMENT) -> None:
    """Pause a deployment's schedules (benchmarks and tests run the queue themselves: the nightly run
    firing mid-measurement would share the queue and the cores with them)."""
    deployment = _request(f"{url}/deployments/name/{name}")
    if deployment is None:
        raise LetheError(f"the Prefect server at {url} has no deployment {name}")
    _request(f"{url}/deployments/{deployment['id']}", "PATCH", {"paused": True})


def claim(url: str, token: str) -> None:
    """Write the stack's token into the server's database (a Prefect variable)."""
    existing = _request(f"{url}/variables/name/{IDENTITY_VARIABLE}")
    if existing is None:
        _request(f"{url}/variables/", "POST", {"name": IDENTITY_VARIABLE, "value": token})
    elif existing.get("value") != token:
        _request(f"{url}/variables/name/{IDENTITY_VARIABLE}", "PATCH", {"value": token})


def is_ours(url: str, token: str) -> bool:
    """The server at `url` holds this stack's token."""
    try:
        found = _request(f"{url}/variables/name/{IDENTITY_VARIABLE}")
    except (LetheError, urllib.error.URLError, OSError, ValueError):
        return False
    return bool(found) and found.get("value") == token


def deploy(env: dict[str, str], ops: dict[str, str], base_model: str, params_path: str, log: Path) -> None:
    """Create the pool and apply prefect.yaml's deployments with this stack's locations filled in."""
    templated = {"LETHE_HOME": str(PROJECT_ROOT), "LETHE_BASE_MODEL": base_model, "LETHE_PARAMS": params_path,
                 "LETHE_TRACKING_URI": ops["tracking_uri"], "LETHE_QUEUE_URL": ops["queue_url"],
                 "LETHE_DVC_STORE": ops["dvc_store"], "LETHE_DVC_REMOTE": ops["dvc_remote"],
                 "MLFLOW_S3_ENDPOINT_URL": ops["s3_endpoint"] or "",
                 "LETHE_BACKEND_STORE_URI": ops["backend_store_uri"]}
    full = {**os.environ, **env, **templated}
    for argv in ([sys.executable, "-m", "prefect", "work-pool", "create", POOL, "--type", "process", "--overwrite"],
                 [sys.executable, "-m", "prefect", "--no-prompt", "deploy", "--all"]):
        with log.open("a") as handle:
            done = subprocess.run(argv, cwd=PROJECT_ROOT, env=full, stdout=handle, stderr=subprocess.STDOUT)
        if done.returncode != 0:
            raise LetheError(f"`{' '.join(argv[2:])}` failed against the local Prefect server; see {log}")
