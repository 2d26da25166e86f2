"""A tiny loopback HTTP server that replays recorded provider responses (real HTTP, no mocks).

Routes map a path to a list of responses served in order (the last one repeats), or to a function
of the query string. Every request is recorded with its headers, so tests can assert on paging
parameters and on what the connector sent.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"{}"
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay: float = 0.0


def reply(body: Any = None, status: int = 200, **headers: str) -> Reply:
    if isinstance(body, bytes):
        data = body
    elif isinstance(body, str) and body.endswith(".json"):
        data = fixture(body)
    else:
        data = json.dumps(body).encode()
    return Reply(status=status, body=data, headers={"Content-Type": "application/json", **headers})


@dataclass
class Seen:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]


class Loopback:
    def __init__(self) -> None:
        self.routes: dict[str, list[Reply] | Callable[[dict[str, list[str]]], Reply]] = {}
        self.seen: list[Seen] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query, keep_blank_values=True)
                outer.seen.append(Seen(parts.path, query, {k.lower(): v for k, v in self.headers.items()}))
                route = outer.routes.get(parts.path)
                if route is None:
                    answer = Reply(404, b'{"error":{"message":"not found"}}')
                elif callable(route):
                    answer = route(query)
                else:
                    answer = route.pop(0) if len(route) > 1 else route[0]
                if answer.delay:
                    time.sleep(answer.delay)
                body = answer.body
                headers = dict(answer.headers)
                if "gzip" in (self.headers.get("Accept-Encoding") or ""):
                    body = gzip.compress(body)
                    headers["Content-Encoding"] = "gzip"
                self.send_response(answer.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def route(self, path: str, *replies: Reply) -> None:
        self.routes[path] = list(replies)

    def calls(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
