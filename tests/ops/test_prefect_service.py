"""The Prefect REST client: a busy server is asked again, a missing object is None, any other error is clear."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from lethe.errors import LetheError
from lethe.ops.prefect_service import BUSY_RETRIES, _request


def _server(statuses: list[int]):
    """A server on 127.0.0.1 answering each request with the next status (the last one repeats)."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            seen.append(self.command)
            status = statuses[min(len(seen), len(statuses)) - 1]
            body = json.dumps({"ok": True} if status == 200 else {"exception_message": "busy"}).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PATCH = _answer

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}", seen


def test_a_busy_server_is_asked_again_until_it_answers():
    server, url, seen = _server([503, 429, 200])
    try:
        assert _request(f"{url}/deployments/x", "PATCH", {"paused": True}, retry_delay=0.01) == {"ok": True}
        assert seen == ["PATCH"] * 3
    finally:
        server.shutdown()


def test_a_server_that_stays_busy_or_fails_is_a_clear_error_and_a_missing_object_is_none():
    server, url, seen = _server([503])
    try:
        with pytest.raises(LetheError, match="answered 503"):
            _request(f"{url}/deployments/x", retry_delay=0.001)
        assert len(seen) == BUSY_RETRIES + 1
    finally:
        server.shutdown()
    for status, expected in ((500, LetheError), (404, None)):
        server, url, seen = _server([status])
        try:
            if expected is None:
                assert _request(f"{url}/variables/name/x") is None
            else:
                with pytest.raises(expected, match=f"answered {status}"):
                    _request(f"{url}/variables/name/x", retry_delay=0.001)
            assert len(seen) == 1  # neither is asked again
        finally:
            server.shutdown()
