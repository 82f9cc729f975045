"""Serving the explorer with waitress (a pure-Python production WSGI server), loopback by default."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from vaekit.errors import VaekitError
from vaekit.explore.app import ExplorerApp
from vaekit.explore.session import MAX_POINTS, ExploredRun

#: Threads answering requests (decodes of different runs and the page's assets run side by side).
THREADS = 4


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(runs: Sequence[str | Path], host: str = "127.0.0.1", port: int = 8050, max_points: int = MAX_POINTS,
          seed: int = 0, out: TextIO = sys.stdout) -> None:
    """Load ``runs`` (one, or two side by side), then serve the explorer on ``host:port`` until
    interrupted (``port`` 0: a free port). Prints ``vaekit explore: serving http://HOST:PORT/`` (the bound
    address) once the server listens; a host that is not loopback gets a warning on stderr."""
    from waitress.server import create_server

    if not 1 <= len(runs) <= 2:
        raise VaekitError(f"vaekit explore takes one run or two to compare side by side, got {len(runs)}")
    if not 0 <= port <= 65535:
        raise VaekitError(f"--port must be in 0..65535 (0: any free port), got {port}")
    if max_points < 2:
        raise VaekitError(f"--points must be >= 2, got {max_points}")
    app = ExplorerApp([ExploredRun(r, max_points=max_points, seed=seed) for r in runs])
    try:
        server = create_server(app, host=host, port=port, threads=THREADS, ident="vaekit")
    except OSError as err:
        raise VaekitError(f"cannot listen on {host}:{port} ({err.strerror or err}); choose another --port "
                          "(0 picks a free one)") from None
    if not is_loopback(host):
        print(f"vaekit: warning: --host {host} serves the explorer beyond this machine; it has no "
              "authentication", file=sys.stderr)
    bound_host = host if ":" not in host else f"[{host}]"
    print(f"vaekit explore: serving http://{bound_host}:{server.effective_port}/ (Ctrl-C to stop)", file=out,
          flush=True)
    try:
        server.run()
    finally:
        server.close()
