"""How the local S3 server is launched (logic only; tests/ops/test_stack.py starts real ones)."""

from __future__ import annotations

import itertools
import json
import stat

import pytest

from lethe.errors import LetheError
from lethe.ops import s3_server


def _ports() -> dict[str, int]:
    return s3_server.pick_internal_ports("seaweedfs", itertools.count(20000).__next__, {20001})


def test_seaweedfs_binds_every_port_to_loopback_with_telemetry_off(tmp_path):
    identities = s3_server.write_identities(tmp_path / "ids.json", "key", "secret")
    argv = s3_server.launch_command("seaweedfs", "127.0.0.1", 19999, tmp_path, _ports(), identities)
    assert argv[0].endswith("weed") and "server" in argv
    for flag in ("-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-s3.port=19999",
                 "-s3.port.iceberg=0", "-s3.port.lance=0", f"-config_dir={tmp_path / 's3-config'}",
                 f"-dir={tmp_path / 's3'}", f"-s3.config={identities}"):
        assert flag in argv, flag
    port_flags = [a for a in argv if ".port" in a and not a.startswith(("-s3.port=", "-s3.port.iceberg",
                                                                         "-s3.port.lance"))]
    assert len(port_flags) == len(s3_server.SEAWEED_INTERNAL_PORTS)  # nothing left on a default port
    assert stat.S_IMODE((tmp_path / "s3").stat().st_mode) == 0o700


def test_internal_ports_are_distinct_and_avoid_taken_ones():
    ports = _ports()
    assert len(set(ports.values())) == len(s3_server.SEAWEED_INTERNAL_PORTS)
    assert 20001 not in ports.values()
    assert s3_server.pick_internal_ports("moto", itertools.count(1).__next__, set()) == {}


def test_identity_file_is_private_and_holds_the_keys(tmp_path):
    path = s3_server.write_identities(tmp_path / "ids.json", "key", "secret")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    identity = json.loads(path.read_text())["identities"][0]
    assert identity["credentials"] == [{"accessKey": "key", "secretKey": "secret"}]


def test_unknown_kind_and_missing_ports_are_clear_errors(tmp_path):
    with pytest.raises(LetheError, match="unknown stack.s3_server 'minio'"):
        s3_server.launch_command("minio", "127.0.0.1", 1, tmp_path, {}, None)
    with pytest.raises(LetheError, match="internal ports"):
        s3_server.launch_command("seaweedfs", "127.0.0.1", 1, tmp_path, {}, tmp_path / "ids.json")
    assert s3_server.launch_command("moto", "127.0.0.1", 5, tmp_path, {}, None)[-4:] == ["-H", "127.0.0.1", "-p", "5"]
