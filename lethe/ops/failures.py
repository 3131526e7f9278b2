"""One readable line for why a request stopped (the queue stores it, the CLI prints it).

Server clients wrap a refused connection in several layers (MLflow's "API request to ... failed
with exception HTTPConnectionPool(...): Max retries exceeded ... NewConnectionError(...)"); an
operator needs the service, the address and the cause. A full disk is named as such.
"""

from __future__ import annotations

import errno
import re

_URL = re.compile(r"(https?://[\w.\-]+:\d+|https?://[\w.\-]+)")
_REFUSED = ("Connection refused", "Failed to establish a new connection", "Could not connect to the endpoint URL",
            "Max retries exceeded", "Connection reset")


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while exc is not None and exc not in seen:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def explain(exc: BaseException, limit: int = 400) -> str:
    """A one-line cause: unreachable server (which, where), full disk (which file), else the message."""
    chain = _chain(exc)
    for link in chain:
        if isinstance(link, OSError) and link.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            where = f" writing {link.filename}" if link.filename else ""
            return f"no space left on the disk{where} ({link.strerror})"
    text = " ".join(str(link) for link in chain)
    if "No space left on device" in text:
        return "no space left on the disk (" + _first_line(text[text.index("No space left"):], 120) + ")"
    if any(marker in text for marker in _REFUSED):
        url = _URL.search(text)
        service = _service(text)
        return f"{service} at {url.group(1) if url else 'its configured address'} is not reachable (connection refused)"
    return _first_line(f"{type(exc).__name__}: {exc}", limit)


def _service(text: str) -> str:
    if "/api/2.0/mlflow" in text or "mlflow" in text.lower():
        return "the MLflow tracking server"
    if "dvc" in text.lower():
        return "the DVC remote"
    if "s3" in text.lower() or "endpoint URL" in text:
        return "the S3 server"
    return "a server"


def _first_line(text: str, limit: int) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
