"""The local stack: an S3-compatible server (moto in server mode) and an MLflow tracking server
with a SQLite backend store and its artifacts in that S3 bucket, both on loopback.

`lethe stack up` starts them as background processes that outlive the command (so the MLflow UI
stays readable), records their pids and URLs in <state_dir>/stack.json, and is idempotent;
`lethe stack down` stops them. Production points LETHE_TRACKING_URI / MLFLOW_S3_ENDPOINT_URL at
real services instead (infra/compose.yaml).

moto keeps the bucket in memory: stopping the stack loses the S3 objects (the SQLite store stays).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from lethe.config import StackParams
from lethe.errors import LetheError

# moto accepts any key pair; real deployments take the caller's AWS environment instead.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "lethe-local", "AWS_SECRET_ACCESS_KEY": "lethe-local",
                     "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class StackInfo:
    """Where the running stack answers."""

    tracking_uri: str
    s3_endpoint: str
    backend_store_uri: str
    artifact_root: str
    dvc_bucket: str
    mlflow_pid: int
    s3_pid: int
    state_dir: str


def _healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _wait(url: str, seconds: float, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if _healthy(url, 1.0):
            return
        if process.poll() is not None:
            raise LetheError(f"server exited with code {process.returncode}; see {log}: "
                             f"{log.read_text()[-300:] if log.is_file() else ''}")
        time.sleep(0.3)
    raise LetheError(f"server at {url} not healthy after {seconds:.0f} s; see {log}")


class LocalStack:
    """Start, find and stop the loopback MLflow + S3 servers of one state folder."""

    def __init__(self, cfg: StackParams, state_dir: str | Path | None = None,
                 mlflow_port: int | None = None, s3_port: int | None = None):
        self.cfg = cfg
        self.state_dir = Path(state_dir or cfg.state_dir).resolve()
        self.mlflow_port = mlflow_port or cfg.mlflow_port
        self.s3_port = s3_port or cfg.s3_port
        self.record = self.state_dir / "stack.json"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.cfg.host}:{self.s3_port}"

    @property
    def tracking_uri(self) -> str:
        return f"http://{self.cfg.host}:{self.mlflow_port}"

    def info(self) -> StackInfo | None:
        """The running stack of this state folder, or None when it is not (fully) up."""
        if not self.record.is_file():
            return None
        info = StackInfo(**json.loads(self.record.read_text()))
        if (_pid_alive(info.mlflow_pid) and _pid_alive(info.s3_pid) and _healthy(info.tracking_uri + "/health")
                and _healthy(info.s3_endpoint)):
            return info
        return None

    def up(self, timeout: float = 90.0) -> StackInfo:
        """Start both servers (or return the running ones) and create the buckets."""
        running = self.info()
        if running:
            return running
        self.down()  # a half-dead stack from an earlier session
        self.state_dir.mkdir(parents=True, exist_ok=True)
        s3_log = self.state_dir / "s3.log"
        s3 = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", self.cfg.host, "-p", str(self.s3_port)],
                              stdout=s3_log.open("w"), stderr=subprocess.STDOUT, env=self._env(),
                              start_new_session=True)
        _wait(self.s3_endpoint, timeout, s3, s3_log)
        self._create_buckets()
        info = StackInfo(self.tracking_uri, self.s3_endpoint, f"sqlite:///{self.state_dir / 'mlflow.db'}",
                         f"s3://{self.cfg.artifact_bucket}/mlflow", self.cfg.dvc_bucket, 0, s3.pid,
                         str(self.state_dir))
        self.record.write_text(json.dumps(asdict(info), indent=1))
        return self.start_mlflow(timeout)

    def _env(self) -> dict[str, str]:
        return {**os.environ, **LOCAL_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint,
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
                "DO_NOT_TRACK": "true"}

    def _create_buckets(self) -> None:
        import boto3

        client = boto3.client("s3", endpoint_url=self.s3_endpoint, region_name="us-east-1",
                              aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        for bucket in (self.cfg.artifact_bucket, self.cfg.dvc_bucket):
            if bucket not in existing:
                client.create_bucket(Bucket=bucket)

    def stop_mlflow(self, hard: bool = True) -> None:
        """Stop only the MLflow server (fault-injection tests); `up()` starts it again."""
        if self.record.is_file():
            _terminate(json.loads(self.record.read_text())["mlflow_pid"], hard)

    def start_mlflow(self, timeout: float = 90.0) -> StackInfo:
        """Start the MLflow server over the recorded SQLite store and bucket (again, after a stop)."""
        record = json.loads(self.record.read_text())
        log = self.state_dir / "mlflow.log"
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", record["backend_store_uri"],
             "--artifacts-destination", record["artifact_root"], "--host", self.cfg.host,
             "--port", str(self.mlflow_port), "--workers", "1"],
            stdout=log.open("a"), stderr=subprocess.STDOUT, env=self._env(), start_new_session=True)
        record["mlflow_pid"] = server.pid
        self.record.write_text(json.dumps(record, indent=1))
        _wait(self.tracking_uri + "/health", timeout, server, log)
        return StackInfo(**record)

    def down(self) -> bool:
        """Stop both servers; True when something was running."""
        if not self.record.is_file():
            return False
        record = json.loads(self.record.read_text())
        stopped = False
        for key in ("mlflow_pid", "s3_pid"):
            stopped |= _terminate(record[key], hard=False)
        self.record.unlink()
        return stopped


def _terminate(pid: int, hard: bool) -> bool:
    """Stop a server's whole process group (uvicorn starts children); wait for it to go."""
    if not _pid_alive(pid):
        return False
    try:
        os.killpg(pid, signal.SIGKILL if hard else signal.SIGTERM)
    except OSError:
        return False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _pid_alive(pid):
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.2)
    if _pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    return True
