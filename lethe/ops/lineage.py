"""Lineage facts recorded on every registered version: code, parameters, data and model hashes."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from lethe.config import Params
from lethe.llm.fingerprint import model_hash

__all__ = ["git_commit", "lineage_tags", "model_hash", "params_hash"]


def git_commit(repo: Path | None = None) -> str:
    """HEAD of the project's git checkout, with '+dirty' when tracked files changed; 'unknown' outside git."""
    cwd = repo or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def params_hash(params: Params) -> str:
    """SHA-256 (first 16 hex) of the fully parsed parameters."""
    blob = json.dumps(params.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def lineage_tags(params: Params, request_id: str, base_model: str | Path, run_id: str, flow_run_id: str | None,
                 md5s: dict[str, str], start_model: str | Path | None = None,
                 parent_version: str | None = None) -> dict[str, str]:
    """lineage.* tags of a model version, plain or agentic: code, parameters (the hash of the Params
    the run used), data (DVC md5s), base and starting model, request, orchestration."""
    tags = {
        "lineage.git_commit": git_commit(),
        "lineage.request_id": request_id,
        "lineage.params_hash": params_hash(params),
        "lineage.base_model": str(base_model),
        "lineage.base_model_hash": model_hash(base_model),
        "lineage.start_model_hash": model_hash(start_model or base_model),
        "lineage.parent_version": parent_version or "none",
        "lineage.prefect_flow_run_id": flow_run_id or "none",
        "lineage.mlflow_run_id": run_id,
    }
    tags.update({f"lineage.dvc_md5.{name}": md5 for name, md5 in md5s.items()})
    return tags
