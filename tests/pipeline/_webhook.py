"""A real HTTP server on 127.0.0.1 (a free port) that records the alert webhook's POSTs.

with webhook_server(statuses=[503, 200]) as hook:   # answers 503, then 200, then 200 ...
    ... hook.url ...
    hook.posts                                      # [(headers, parsed JSON body)] of every POST
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hook:
    url: str
    statuses: list[int]  # answers in order; the last one repeats
    posts: list[tuple[dict[str, str], Any]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)

    def accepted(self) -> list[Any]:
        """Bodies of the POSTs answered 2xx."""
        return [body for (_, body), code in zip(self.posts, self.answered, strict=True) if 200 <= code < 300]


@contextmanager
def webhook_server(statuses: list[int] | None = None, path: str = "/hook/secret-token") -> Iterator[Hook]:
    lock = threading.Lock()
    hook = Hook(url="", statuses=list(statuses or [200]))

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                code = hook.statuses[min(len(hook.answered), len(hook.statuses) - 1)]
                hook.posts.append((dict(self.headers.items()), json.loads(body)))
                hook.answered.append(code)
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:  # keep the test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    hook.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
