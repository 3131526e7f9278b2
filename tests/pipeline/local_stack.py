"""Helpers shared by the integration tests that start the local stack (not tests themselves)."""

from __future__ import annotations

from lethe.ops.stack import free_port as _free_port
from lethe.ops.stack import s3_client


def free_port() -> int:
    """A port free on 127.0.0.1 now; pick it just before the server starts."""
    return _free_port("127.0.0.1")


def s3_keys(endpoint: str, bucket: str) -> list[str]:
    """Every key of a bucket on the local S3 server (all pages)."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


__all__ = ["free_port", "s3_client", "s3_keys"]
