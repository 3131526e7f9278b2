"""Where the operational services are: the local stack by default, configured ones in production.

Production sets LETHE_TRACKING_URI (MLflow), LETHE_QUEUE_URL (PostgreSQL), LETHE_DVC_REMOTE,
MLFLOW_S3_ENDPOINT_URL / AWS credentials as usual, and LETHE_BACKEND_STORE_URI for reports.
Without LETHE_TRACKING_URI (and with registry.tracking_uri empty) the local stack is used,
started on demand.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lethe.config import Params
from lethe.ops.dvc_store import DvcStore
from lethe.ops.registry import tracking_uri_from_env


@dataclass(frozen=True)
class OpsEnv:
    """Resolved service locations for one process (JSON-serializable, passed into flows)."""

    tracking_uri: str
    queue_url: str
    dvc_store: str
    dvc_remote: str
    s3_endpoint: str | None
    backend_store_uri: str
    credentials: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def store(self) -> DvcStore:
        return DvcStore(self.dvc_store, self.dvc_remote, self.s3_endpoint, self.credentials)

    def versioned_file(self, request_id: str, role: str, local: Path | None) -> Path:
        """A request's versioned output: its work-folder copy `local` when it is there, else restored
        from the DVC remote, where it is versioned under its role's name (request_steps.versioned_files)."""
        return local if local is not None and local.is_file() else self.store().restore(request_id, role)


def queue_url(params: Params) -> str:
    """SQL URL of the request queue: LETHE_QUEUE_URL, else params.yaml (no server needed)."""
    return os.environ.get("LETHE_QUEUE_URL") or params.registry.queue_url


def resolve(params: Params, start_stack: bool = True) -> OpsEnv:
    """Service locations from the environment, else the local stack (started when needed)."""
    cfg = params.registry
    queue = queue_url(params)
    remote = os.environ.get("LETHE_DVC_REMOTE") or cfg.dvc_remote
    configured = tracking_uri_from_env(cfg.tracking_uri)
    if configured:
        return OpsEnv(configured, queue, cfg.dvc_store, remote, os.environ.get("MLFLOW_S3_ENDPOINT_URL"),
                      os.environ.get("LETHE_BACKEND_STORE_URI", "see the tracking server's configuration"))
    from lethe.errors import LetheError
    from lethe.ops.stack import LOCAL_CREDENTIALS, LocalStack

    stack = LocalStack(params.stack)
    info = stack.up() if start_stack else stack.info()
    if info is None:
        raise LetheError("the local stack is not running: start it with `lethe stack up`")
    local_remote = remote if os.environ.get("LETHE_DVC_REMOTE") else f"s3://{info.dvc_bucket}/store"
    os.environ.update(LOCAL_CREDENTIALS)  # boto3 / DVC subprocesses talk to the local S3 server
    return OpsEnv(info.tracking_uri, queue, str(Path(cfg.dvc_store).resolve()), local_remote,
                  info.s3_endpoint, info.backend_store_uri, dict(LOCAL_CREDENTIALS))
