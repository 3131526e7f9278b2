"""Helpers shared by the integration tests that start the local stack (not tests themselves)."""

from __future__ import annotations

import socket

import boto3

from lethe.ops.stack import LOCAL_CREDENTIALS


def free_port() -> int:
    """A port free on 127.0.0.1 now; pick it just before the server starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def s3_keys(endpoint: str, bucket: str) -> list[str]:
    """Every key of a bucket on the local S3 server (all pages)."""
    pages = s3_client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return [obj["Key"] for page in pages for obj in page.get("Contents", [])]


def s3_client(endpoint: str):
    """A boto3 S3 client for the local S3 server."""
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
