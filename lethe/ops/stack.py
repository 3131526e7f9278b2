"""The local stack: an S3-compatible server (SeaweedFS, objects on disk; or moto, in memory) and an
MLflow tracking server with a SQLite backend store and its artifacts in that S3 bucket, on loopback.

`lethe stack up` starts them as background processes that outlive the command (so the MLflow UI
stays readable), records their pids, ports and URLs in <state_dir>/stack.json, and is idempotent;
`lethe stack down` stops them. Production points LETHE_TRACKING_URI / MLFLOW_S3_ENDPOINT_URL at
real services instead (infra/compose.yaml).

Two checkouts may run a stack each on one machine, so a stack never trusts "a server answers on
my port": it adopts a server only when (1) the recorded pid is alive and its command line is the
server this state folder started, on that port, and (2) the server proves its identity: the MLflow
server holds this state folder's token in *this folder's* SQLite store (read back through the
server and from the file), and the S3 server returns the token object written at start. A port
held by anybody else is never adopted: another free port is chosen and recorded.

SeaweedFS (the default, `lethe.ops.s3_server`) keeps its objects under <state_dir>/s3, so they
survive `lethe stack down` and a reboot; moto loses them when it stops. Either way a half-dead
stack restarts only the server that died.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lethe.config import StackParams
from lethe.errors import LetheError
from lethe.fileio import write_atomic
from lethe.ops import prefect_service, s3_server

# The local S3 server's keys (SeaweedFS checks them, moto accepts any); real deployments take the
# caller's AWS environment instead.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "lethe-local", "AWS_SECRET_ACCESS_KEY": "lethe-local",
                     "AWS_DEFAULT_REGION": "us-east-1"}
IDENTITY_EXPERIMENT = "lethe-stack-identity"
IDENTITY_TAG = "lethe.stack_token"
IDENTITY_KEY = ".lethe-stack-identity"


@dataclass(frozen=True)
class StackInfo:
    """Where the running stack answers (only ever reported after its identity was verified)."""

    tracking_uri: str
    s3_endpoint: str
    backend_store_uri: str
    artifact_root: str
    dvc_bucket: str
    mlflow_pid: int
    s3_pid: int
    state_dir: str
    prefect_api_url: str = ""  # empty when stack.prefect is off
    prefect_pid: int = 0
    worker_pid: int = 0


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _pid_alive(pid: int) -> bool:
    if not isinstance(pid, int) or pid <= 1:  # 0 would mean "my own process group" to kill()
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _owned(pid: int, kind: str, port: int) -> bool:
    """The pid is alive and is the `kind` server ("mlflow", "weed", "moto") this stack started on `port`."""
    if not _pid_alive(pid):
        return False
    args = _cmdline(pid)
    on_port = any(a == str(port) or a.endswith((f"={port}", f"-{port}")) for a in args)
    return any(kind in a for a in args) and on_port


def port_free(host: str, port: int) -> bool:
    """Nothing listens on host:port (we could bind it now)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str) -> int:
    """A port the kernel says is free on `host` now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _wait(url: str, seconds: float, process: subprocess.Popen, log: Path,
          ready: Callable[[], bool] | None = None) -> None:
    """Until `ready()` (default: the URL answers 200), or a clear error when the server exits or hangs."""
    ready = ready or (lambda: _healthy(url, 1.0))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ready():
            return
        if process.poll() is not None:
            raise LetheError(f"server exited with code {process.returncode}; see {log}: "
                             f"{log.read_text()[-300:] if log.is_file() else ''}")
        time.sleep(0.3)
    raise LetheError(f"server at {url} not healthy after {seconds:.0f} s; see {log}")


def _s3_answers(endpoint: str) -> bool:
    try:
        s3_client(endpoint).list_buckets()
    except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
        return False
    return True


def s3_client(endpoint: str):
    """A boto3 client for the local S3 server (its fixed local keys; one attempt, short timeouts)."""
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                        config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10))


class LocalStack:
    """Start, find and stop the loopback MLflow + S3 servers of one state folder."""

    def __init__(self, cfg: StackParams, state_dir: str | Path | None = None,
                 mlflow_port: int | None = None, s3_port: int | None = None):
        self.cfg = cfg
        self.state_dir = Path(state_dir or cfg.state_dir).resolve()
        self.mlflow_port = mlflow_port or cfg.mlflow_port
        self.s3_port = s3_port or cfg.s3_port
        self.record = self.state_dir / "stack.json"

    # -- the record ------------------------------------------------------------------------
    def _read(self) -> dict | None:
        if not self.record.is_file():
            return None
        try:
            return json.loads(self.record.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def _write(self, record: dict) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomic(self.record, json.dumps(record, indent=1), mode=0o600)

    def _token(self) -> str:
        """This state folder's identity token, created once (kept across restarts)."""
        path = self.state_dir / "identity"
        if not path.is_file():
            self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_atomic(path, secrets.token_hex(16), mode=0o600)
        return path.read_text().strip()

    def _url(self, port: int) -> str:
        return f"http://{self.cfg.host}:{port}"

    # -- identity --------------------------------------------------------------------------
    def _mlflow_is_ours(self, record: dict) -> bool:
        """The server on the recorded port is the recorded process, and it reads and writes our store."""
        port = record["mlflow_port"]
        if not _owned(record.get("mlflow_pid", 0), "mlflow", port):
            return False
        uri = self._url(port)
        if not _healthy(uri + "/health"):
            return False
        query = urllib.parse.urlencode({"experiment_name": IDENTITY_EXPERIMENT})
        try:
            with urllib.request.urlopen(f"{uri}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=5) as r:
                tags = {t["key"]: t["value"] for t in json.load(r)["experiment"].get("tags", [])}
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return False
        return tags.get(IDENTITY_TAG) == self._token() and self._store_has_token(record)

    def _store_has_token(self, record: dict) -> bool:
        database = record["backend_store_uri"].removeprefix("sqlite:///")
        try:
            with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as conn:
                row = conn.execute(
                    "SELECT t.value FROM experiment_tags t JOIN experiments e ON e.experiment_id = t.experiment_id "
                    "WHERE e.name = ? AND t.key = ?", (IDENTITY_EXPERIMENT, IDENTITY_TAG)).fetchone()
        except sqlite3.Error:
            return False
        return bool(row) and row[0] == self._token()

    def _s3_is_ours(self, record: dict) -> bool:
        """The recorded S3 process of the configured kind serves this folder's token object."""
        port = record["s3_port"]
        kind = _s3_kind(record)
        if kind != self.cfg.s3_server or not _owned(record.get("s3_pid", 0), s3_server.MARKERS[kind], port):
            return False
        try:
            body = s3_client(self._url(port)).get_object(Bucket=self.cfg.artifact_bucket, Key=IDENTITY_KEY)["Body"]
            return body.read().decode() == self._token()
        except Exception:  # noqa: BLE001 - any failure means "not provably ours"
            return False

    def info(self) -> StackInfo | None:
        """The running stack of this state folder, or None when it is not (fully, provably) up."""
        record = self._read()
        if record is None or "mlflow_port" not in record:
            return None
        if self._s3_is_ours(record) and self._mlflow_is_ours(record) and self._prefect_is_ours(record):
            return self._info(record)
        return None

    def _info(self, record: dict) -> StackInfo:
        prefect = self.cfg.prefect and "prefect_port" in record
        return StackInfo(self._url(record["mlflow_port"]), self._url(record["s3_port"]), record["backend_store_uri"],
                         record["artifact_root"], record["dvc_bucket"], record["mlflow_pid"], record["s3_pid"],
                         str(self.state_dir),
                         prefect_service.api_url(self.cfg.host, record["prefect_port"]) if prefect else "",
                         record.get("prefect_pid", 0) if prefect else 0, record.get("worker_pid", 0) if prefect else 0)

    # -- Prefect ---------------------------------------------------------------------------
    def _prefect_server_is_ours(self, record: dict) -> bool:
        port = record.get("prefect_port", -1)
        url = prefect_service.api_url(self.cfg.host, port)
        return (_owned(record.get("prefect_pid", 0), "prefect", port) and prefect_service.healthy(url)
                and prefect_service.is_ours(url, self._token()))

    def _prefect_is_ours(self, record: dict) -> bool:
        """Prefect is off, or its server proves its identity and its worker is alive."""
        if not self.cfg.prefect:
            return True
        return self._prefect_server_is_ours(record) and _owned_worker(record.get("worker_pid", 0),
                                                                       record.get("prefect_port", -1))

    def prefect_env(self) -> dict[str, str]:
        """Settings that point a process at this stack's Prefect server (empty when it has none)."""
        record = self._read() or {}
        if not self.cfg.prefect or "prefect_port" not in record:
            return {}
        return prefect_service.environment(self.state_dir, self.cfg.host, record["prefect_port"])

    def _up_prefect(self, record: dict, timeout: float) -> None:
        server_ok = self._prefect_server_is_ours(record)
        if not server_ok:
            _terminate(record.get("worker_pid", 0), prefect_service.worker_name(record.get("prefect_port", -1)),
                       record.get("prefect_port", -1), hard=False)
            _terminate(record.get("prefect_pid", 0), "prefect", record.get("prefect_port", -1), hard=False)
            taken = {record["s3_port"], record["mlflow_port"]}
            record["prefect_port"] = self._pick_port(self.cfg.prefect_port, taken, self.notes, "Prefect")
        port = record["prefect_port"]
        env = {**self._env(record["s3_port"]), **prefect_service.environment(self.state_dir, self.cfg.host, port)}
        if not server_ok:
            log = self.state_dir / "prefect.log"
            server = subprocess.Popen(prefect_service.server_command(self.cfg.host, port), stdout=log.open("a"),
                                      stderr=subprocess.STDOUT, env=env, start_new_session=True)
            record["prefect_pid"], record["worker_pid"] = server.pid, 0
            self._write(record)
            url = prefect_service.api_url(self.cfg.host, port)
            _wait(url, timeout, server, log, ready=lambda: prefect_service.healthy(url))
            prefect_service.claim(url, self._token())
        if not _owned_worker(record.get("worker_pid", 0), port):
            log = self.state_dir / "worker.log"
            worker = subprocess.Popen(prefect_service.worker_command(port), stdout=log.open("a"),
                                      stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                      cwd=prefect_service.PROJECT_ROOT)
            record["worker_pid"] = worker.pid
            self._write(record)

    @property
    def s3_endpoint(self) -> str:
        record = self._read()
        return self._url(record["s3_port"] if record else self.s3_port)

    @property
    def tracking_uri(self) -> str:
        record = self._read()
        return self._url(record["mlflow_port"] if record else self.mlflow_port)

    # -- start -----------------------------------------------------------------------------
    def _pick_port(self, wanted: int, taken: set[int], notes: list[str], what: str) -> int:
        if wanted not in taken and port_free(self.cfg.host, wanted):
            return wanted
        port = free_port(self.cfg.host)
        while port in taken:
            port = free_port(self.cfg.host)
        notes.append(f"{what} port {wanted} on {self.cfg.host} is in use by another process; using {port}")
        return port

    def up(self, timeout: float = 90.0) -> StackInfo:
        """Start what is not running (or return the running stack) and create the buckets.

        Only a server that died is restarted: a healthy S3 server keeps its objects.
        """
        record = self._read() or {}
        self.notes: list[str] = []
        if "mlflow_port" in record:
            s3_ok = self._s3_is_ours(record)
            mlflow_ok = s3_ok and self._mlflow_is_ours(record)
            if s3_ok and mlflow_ok:
                if not self._prefect_is_ours(record):
                    self._up_prefect(record, timeout)
                return self._info(record)
        else:
            s3_ok = mlflow_ok = False
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        record.setdefault("backend_store_uri", f"sqlite:///{self.state_dir / 'mlflow.db'}")
        record.update(artifact_root=f"s3://{self.cfg.artifact_bucket}/mlflow", dvc_bucket=self.cfg.dvc_bucket)
        if not s3_ok:
            self._stop_s3(record)
            record["s3_port"] = self._pick_port(self.s3_port, set(), self.notes, "S3")
            record["s3_server"] = self.cfg.s3_server
            record["s3_pid"] = self._start_s3(record["s3_port"], timeout)
            self._write(record)
        if not mlflow_ok:  # also after an S3 restart: the MLflow server holds the S3 endpoint it was started with
            _terminate(record.get("mlflow_pid", 0), "mlflow", record.get("mlflow_port", -1), hard=False)
            record["mlflow_port"] = self._pick_port(self.mlflow_port, {record["s3_port"]}, self.notes, "MLflow")
            record["mlflow_pid"] = 0
            self._write(record)
            self.start_mlflow(timeout)
            record = self._read()
        if self.cfg.prefect:
            self._up_prefect(record, timeout)
        for note in self.notes:
            print(f"lethe stack: {note}", file=sys.stderr)
        return self._info(record)

    def _env(self, s3_port: int) -> dict[str, str]:
        return {**os.environ, **LOCAL_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": self._url(s3_port),
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true"}

    def _start_s3(self, port: int, timeout: float) -> int:
        log = self.state_dir / "s3.log"
        kind = self.cfg.s3_server
        internal = s3_server.pick_internal_ports(kind, lambda: free_port(self.cfg.host), {port, self.mlflow_port})
        identities = None
        if kind == "seaweedfs":
            identities = s3_server.write_identities(self.state_dir / "s3-identities.json",
                                                    LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                                    LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        argv = s3_server.launch_command(kind, self.cfg.host, port, self.state_dir, internal, identities)
        server = subprocess.Popen(argv, stdout=log.open("a"), stderr=subprocess.STDOUT, env=self._env(port),
                                  start_new_session=True, cwd=self.state_dir)
        _wait(self._url(port), timeout, server, log, ready=lambda: _s3_answers(self._url(port)))
        client = s3_client(self._url(port))
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in (self.cfg.artifact_bucket, self.cfg.dvc_bucket):
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=self.cfg.artifact_bucket, Key=IDENTITY_KEY, Body=self._token().encode())
        return server.pid

    @staticmethod
    def _stop_s3(record: dict, hard: bool = False) -> bool:
        kind = _s3_kind(record)
        return _terminate(record.get("s3_pid", 0), s3_server.MARKERS[kind], record.get("s3_port", -1), hard,
                          grace=s3_server.STOP_GRACE_SECONDS[kind])

    def stop_s3(self, hard: bool = True) -> None:
        """Stop only the S3 server (fault-injection tests); `up()` starts it again over the same data."""
        record = self._read()
        if record:
            self._stop_s3(record, hard)

    def stop_mlflow(self, hard: bool = True) -> None:
        """Stop only the MLflow server (fault-injection tests); `up()` or `start_mlflow()` starts it again."""
        record = self._read()
        if record:
            _terminate(record.get("mlflow_pid", 0), "mlflow", record.get("mlflow_port", -1), hard)

    def stop_prefect_server(self, hard: bool = True) -> None:
        """Stop only the Prefect server (fault-injection tests); `up()` starts it again over the same
        database, on the same port when it is still free."""
        record = self._read()
        if record:
            _terminate(record.get("prefect_pid", 0), "prefect", record.get("prefect_port", -1), hard)

    def start_mlflow(self, timeout: float = 90.0) -> StackInfo:
        """Start the MLflow server over the recorded SQLite store and bucket (again, after a stop)."""
        record = self._read()
        if record is None:
            raise LetheError(f"no stack recorded in {self.state_dir}: run `lethe stack up`")
        port = record["mlflow_port"]
        if not port_free(self.cfg.host, port):
            raise LetheError(f"MLflow port {port} on {self.cfg.host} is taken by another process; run "
                             "`lethe stack up` to pick another")
        log = self.state_dir / "mlflow.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", record["backend_store_uri"],
             "--artifacts-destination", record["artifact_root"], "--host", self.cfg.host,
             "--port", str(port), "--workers", "1"],
            stdout=log.open("a"), stderr=subprocess.STDOUT, env=self._env(record["s3_port"]), start_new_session=True)
        record["mlflow_pid"] = server.pid
        self._write(record)
        _wait(self._url(port) + "/health", timeout, server, log)
        self._claim_mlflow(port)
        if not self._mlflow_is_ours(record):
            raise LetheError(f"the MLflow server on port {port} does not write to {record['backend_store_uri']}")
        return self._info(record)

    def _claim_mlflow(self, port: int) -> None:
        """Write this folder's token into the store through the server (experiment tag)."""
        from mlflow import MlflowClient

        client = MlflowClient(tracking_uri=self._url(port))
        found = client.get_experiment_by_name(IDENTITY_EXPERIMENT)
        experiment = found.experiment_id if found else client.create_experiment(IDENTITY_EXPERIMENT)
        client.set_experiment_tag(experiment, IDENTITY_TAG, self._token())

    def down(self) -> bool:
        """Stop both servers (only processes this stack started); True when something was running."""
        record = self._read()
        if record is None:
            return False
        port = record.get("prefect_port", -1)
        stopped = _terminate(record.get("worker_pid", 0), prefect_service.worker_name(port), port, hard=False)
        stopped |= _terminate(record.get("prefect_pid", 0), "prefect", port, hard=False)
        stopped |= _terminate(record.get("mlflow_pid", 0), "mlflow", record.get("mlflow_port", -1), hard=False)
        stopped |= self._stop_s3(record)
        self.record.unlink(missing_ok=True)
        return stopped


def _owned_worker(pid: int, port: int) -> bool:
    """The pid is alive and is the Prefect worker this stack started for its server on `port`."""
    return _pid_alive(pid) and prefect_service.worker_name(port) in _cmdline(pid)


def _s3_kind(record: dict) -> str:
    """The kind of S3 server a stack record describes (records older than the choice were moto)."""
    kind = record.get("s3_server", "moto")
    return kind if kind in s3_server.MARKERS else "moto"


def _terminate(pid: int, kind: str, port: int, hard: bool, grace: float = 20.0) -> bool:
    """Stop a server's whole process group (uvicorn starts children) if it is ours; wait for it to go.

    SIGTERM first (unless `hard`), SIGKILL after `grace` seconds. Refuses anything that is not the
    `kind` server on `port` this stack started, and never signals the caller's own process group.
    """
    if not _owned(pid, kind, port):
        return False
    try:
        group = os.getpgid(pid)
    except OSError:
        return False
    if group in (0, 1, os.getpgrp()):
        return False
    try:
        os.killpg(group, signal.SIGKILL if hard else signal.SIGTERM)
    except OSError:
        return False
    if not _gone_within(pid, grace):
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
        _gone_within(pid, 10.0)
    return True


def _gone_within(pid: int, seconds: float) -> bool:
    """Wait (reaping it when it is our child) until pid has exited; False when it is still there."""
    deadline = time.monotonic() + seconds
    while _pid_alive(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not _pid_alive(pid):
            break
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True
