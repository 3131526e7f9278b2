"""Per-request outputs versioned by DVC and pushed to an S3 remote.

The store is a DVC project without git (`dvc init --no-scm`) under artifacts/, so versioning a
request never touches the code repository. Each request's files are copied to
`requests/<request_id>/`, `dvc add`-ed (the .dvc files carry the md5 that MLflow records as the
dataset digest) and pushed. DVC cannot run two commands in one workspace: every command here
holds an exclusive file lock.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import yaml

from lethe import failpoints
from lethe.errors import LetheError


class DvcStore:
    """A no-git DVC project with one S3 remote (endpoint = the S3-compatible server)."""

    def __init__(self, root: str | Path, remote_url: str, endpoint_url: str | None,
                 credentials: Mapping[str, str] | None = None):
        self.root = Path(root).resolve()
        self.remote_url = remote_url
        self.endpoint_url = endpoint_url
        self.credentials = dict(credentials or {})

    @contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lethe-dvc.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _dvc(self, *args: str) -> str:
        env = {**os.environ, "DVC_NO_ANALYTICS": "1", **self.credentials}
        process = subprocess.Popen([sys.executable, "-m", "dvc", *args], cwd=self.root, env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if args[0] == "push":
            failpoints.reach("dvc.pushing")
        stdout, stderr = process.communicate()
        if process.returncode != 0:
            lines = [ln.strip() for ln in (stderr or stdout).splitlines()
                     if ln.strip() and not ln.startswith("Having any troubles")]
            causes = [ln for ln in lines if ln.startswith("ERROR") or "rror" in ln][:3] or lines[-3:]
            command = " ".join(a for a in args if not a.endswith(".dvc"))  # the file list is noise here
            raise LetheError(f"dvc {command} failed (remote {self.remote_url}, endpoint "
                             f"{self.endpoint_url or 'AWS'}): {' | '.join(causes)[:800]}")
        return stdout

    def _ensure(self) -> None:
        if not (self.root / ".dvc").is_dir():
            self._dvc("init", "--no-scm", "-q")
            self._dvc("config", "core.analytics", "false")
        self._dvc("remote", "add", "-f", "-d", "storage", self.remote_url)
        if self.endpoint_url:
            self._dvc("remote", "modify", "storage", "endpointurl", self.endpoint_url)

    def version(self, request_id: str, files: Mapping[str, Path]) -> dict[str, str]:
        """Copy `files` (name -> file or folder) under requests/<id>/, dvc add, dvc push; name -> md5."""
        with self._lock():
            self._ensure()
            target = self.root / "requests" / request_id
            target.mkdir(parents=True, exist_ok=True)
            names = []
            for name, source in files.items():
                source = Path(source)
                if not source.exists():
                    raise LetheError(f"cannot version {name}: {source} does not exist")
                dest = target / name
                if dest.is_dir():
                    shutil.rmtree(dest)
                (shutil.copytree if source.is_dir() else shutil.copy2)(source, dest)
                names.append(str(dest.relative_to(self.root)))
            self._dvc("add", *names)
            self._dvc("push", *[n + ".dvc" for n in names])
            return {name: self.md5(request_id, name) for name in files}

    def md5(self, request_id: str, name: str) -> str:
        """The md5 DVC recorded for one versioned output."""
        record = self.root / "requests" / request_id / f"{name}.dvc"
        if not record.is_file():
            raise LetheError(f"{name} of {request_id} is not versioned in {self.root}")
        return str(yaml.safe_load(record.read_text())["outs"][0]["md5"])

    def restore(self, request_id: str, name: str) -> Path:
        """Bring back a versioned output from the remote (after the workspace copy is gone)."""
        with self._lock():
            self._ensure()
            self._dvc("pull", f"requests/{request_id}/{name}.dvc")
        return self.root / "requests" / request_id / name
