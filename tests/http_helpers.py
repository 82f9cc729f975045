"""A real HTTP server on 127.0.0.1 (ephemeral port, background thread) for the download tests."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar


class FileHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``files[name]`` (else ``root / name``) at ``/name``; every request gets ``status`` when it is
    not 200; ``/drop/name`` promises twice the bytes of ``files[name]``, sends half, then hangs up."""

    files: ClassVar[dict[str, bytes]] = {}
    root: ClassVar[Path | None] = None
    status: ClassVar[int] = 200

    def log_message(self, *args: object) -> None:  # keep pytest output quiet
        pass

    def do_GET(self) -> None:
        path = self.path.lstrip("/")
        if self.status != 200:
            self.send_error(self.status)
            return
        if path.startswith("drop/") and path[5:] in self.files:
            body = self.files[path[5:]]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) * 2))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        body = self.files.get(path)
        if body is None and self.root is not None and (self.root / path).is_file():
            body = (self.root / path).read_bytes()
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextlib.contextmanager
def serve(**attrs: Any) -> Iterator[tuple[str, type[FileHandler]]]:
    """A fresh server whose handler class has its own ``files``/``root``/``status`` (``attrs`` set them);
    yields (base URL, handler class) and shuts the server down afterwards."""
    handler = type("Handler", (FileHandler,), {"files": {}, "root": None, "status": 200, **attrs})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join(timeout=5)
