"""The explorer's WSGI application: a fixed set of routes, JSON in and out, no file-system access.

Routes (``<i>``: the run's position on the command line, 0 or 1; ``<j>``: a map point):

* ``GET /`` and ``GET /static/explorer.js`` / ``explorer.css``: the page (package files, a fixed list);
* ``GET /api/runs``: each run's description (latent size, dimensions ordered by KL, map methods, view, and
  ``prior``: the name of the prior the page draws from, null for a plain AE);
* ``GET /api/runs/<i>/map?method=M``: map points (n, 2) and labels;
* ``GET /api/runs/<i>/points/<j>``: point j's code, label, input and reconstruction;
* ``POST /api/runs/<i>/decode`` ``{"z": [d numbers]}`` or ``{"map": [u, v], "method": M}``, optional
  ``"label"`` (label-conditional runs) and ``"point"`` (whose covariates a covariate run decodes with):
  the code and its decoded output;
* ``POST /api/runs/<i>/prior`` ``{"n": k, "seed": s}`` (1 <= k <= 32): k draws z ~ p(z) from the run's own
  prior (a learned mog / VampPrior / two-level prior included) and their decoder means;
* ``POST /api/runs/<i>/interpolate`` ``{"from": [d], "to": [d], "steps": k}`` (2 <= k <= 32): the k codes
  on the straight line, endpoints included, and their decoded outputs.

Bad input (malformed JSON, a code of the wrong length, NaN or infinite values, non-numbers, an index out
of range, an unknown method) is a 400 with ``{"error": message}``; unknown routes are 404, wrong methods
405, bodies over :data:`MAX_BODY` bytes 413. A bug is a 500 with a one-line JSON message; its traceback
goes to the server's stderr, never to the client.
"""

from __future__ import annotations

import json
import math
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from importlib import resources
from typing import Any, final
from urllib.parse import parse_qs

import numpy as np

from vaekit.errors import VaekitError
from vaekit.explore.projections import available_methods
from vaekit.explore.session import ExploredRun

MAX_BODY = 64 * 1024
MAX_STEPS = 32
STATIC = {"/": ("index.html", "text/html; charset=utf-8"),
          "/static/explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
          "/static/explorer.css": ("explorer.css", "text/css; charset=utf-8")}
_RUN = re.compile(r"/api/runs/(\d{1,4})/(map|decode|interpolate|prior|points/(\d{1,9}))")

StartResponse = Callable[..., Any]


class HTTPError(Exception):
    """A request the explorer refuses: ``status`` ('400 Bad Request', ...) and a one-line message."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


def bad(message: str) -> HTTPError:
    return HTTPError("400 Bad Request", message)


def _reject_constant(name: str) -> float:
    raise bad(f"{name} is not a number the explorer accepts; send finite numbers")


def parse_body(environ: dict[str, Any]) -> dict[str, Any]:
    """The request's JSON object (at most :data:`MAX_BODY` bytes; NaN/Infinity literals refused)."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise bad("Content-Length is not a number") from None
    if length > MAX_BODY:
        raise HTTPError("413 Payload Too Large", f"request bodies are limited to {MAX_BODY} bytes")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise bad(f"the body is not JSON ({err}); send a JSON object such as {{\"z\": [0.0, 0.0]}}") from None
    if not isinstance(body, dict):
        raise bad("the body must be a JSON object, e.g. {\"z\": [0.0, 0.0]}")
    return body


def numbers(body: dict[str, Any], key: str, n: int) -> np.ndarray:
    """``body[key]`` as n finite numbers (float64 (n,)); anything else is a 400 naming the key."""
    value = body.get(key)
    if not isinstance(value, list) or len(value) != n:
        got = f"a list of {len(value)}" if isinstance(value, list) else type(value).__name__
        raise bad(f"\"{key}\" must be a list of {n} numbers, got {got}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise bad(f"\"{key}\" must hold only numbers")
    if not all(math.isfinite(v) for v in value):
        raise bad(f"\"{key}\" holds NaN or infinite values; send finite numbers")
    return np.asarray(value, dtype=np.float64)


def integer(body: dict[str, Any], key: str, lo: int, hi: int, default: int | None = None) -> int | None:
    """``body[key]`` as an int in lo..hi (None/``default`` when absent)."""
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise bad(f"\"{key}\" must be a whole number in {lo}..{hi}, got {json.dumps(value)[:40]}")
    return value


@final
class ExplorerApp:
    """The WSGI callable serving ``runs`` (see the module doc for its routes)."""

    def __init__(self, runs: list[ExploredRun]) -> None:
        self.runs = runs
        folder = resources.files("vaekit.explore") / "static"
        self.static = {route: ((folder / name).read_bytes(), ctype) for route, (name, ctype) in STATIC.items()}

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, body, ctype = self.route(environ)
        except HTTPError as err:
            status, body, ctype = err.status, self._json({"error": str(err)}), "application/json"
        except VaekitError as err:  # the model refused the input (vaekit.inputs): the user's to fix
            status, body, ctype = "400 Bad Request", self._json({"error": str(err)}), "application/json"
        except Exception:
            traceback.print_exc(file=sys.stderr)
            status = "500 Internal Server Error"
            body, ctype = self._json({"error": "internal error; the server's log has the details"}), "application/json"
        start_response(status, [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
        return [body]

    @staticmethod
    def _json(obj: Any) -> bytes:
        return json.dumps(obj, allow_nan=False).encode("utf-8")

    def route(self, environ: dict[str, Any]) -> tuple[str, bytes, str]:
        path, method = environ.get("PATH_INFO") or "/", environ.get("REQUEST_METHOD", "GET")
        if path in self.static:
            self._allow(method, "GET")
            content, ctype = self.static[path]
            return "200 OK", content, ctype
        if path == "/api/runs":
            self._allow(method, "GET")
            return self._ok({"runs": [r.info() for r in self.runs]})
        match = _RUN.fullmatch(path)
        if match is None:
            raise HTTPError("404 Not Found", f"no such page: {path[:80]}")
        i = int(match.group(1))
        if i >= len(self.runs):
            raise HTTPError("404 Not Found", f"no run {i}: this explorer serves runs 0..{len(self.runs) - 1}")
        run, what = self.runs[i], match.group(2)
        if what == "map":
            self._allow(method, "GET")
            query = parse_qs(environ.get("QUERY_STRING", ""))
            methods = list(available_methods(run.latent_dim))
            chosen = query.get("method", [methods[0]])[0]
            if chosen not in methods:
                raise bad(f"unknown map method '{chosen[:40]}'; use one of {', '.join(methods)}")
            return self._ok(run.map(chosen))
        if what == "prior":  # draws z ~ p(z) from the run's own (possibly learned) prior, decoded
            self._allow(method, "POST")
            body = parse_body(environ)
            label, point = self._condition(run, body)
            n = integer(body, "n", 1, MAX_STEPS, 8)
            seed = integer(body, "seed", 0, 2**31 - 1, 0)
            assert n is not None and seed is not None
            return self._ok(run.prior_samples(n, seed, label, point))
        if what.startswith("points/"):
            self._allow(method, "GET")
            j = int(match.group(3))
            if j >= run.n_points:
                raise bad(f"point {j} does not exist; the map has points 0..{run.n_points - 1}")
            return self._ok(run.point(j))
        self._allow(method, "POST")
        body = parse_body(environ)
        label, point = self._condition(run, body)
        d = run.latent_dim
        if what == "decode":
            if "z" in body:
                z = numbers(body, "z", d)
            elif "map" in body:
                chosen = body.get("method")
                usable = available_methods(run.latent_dim)
                if not isinstance(chosen, str) or chosen not in usable:
                    raise bad(f"\"method\" must be one of {', '.join(usable)} with \"map\"")
                z = run.projection(chosen).code_at(numbers(body, "map", 2))
            else:
                raise bad(f"give \"z\" (a list of {d} numbers) or \"map\" ([u, v]) with \"method\"")
            return self._ok({"z": z.tolist(), "output": run.decode(z[None], label, point)[0]})
        steps = integer(body, "steps", 2, MAX_STEPS, 8)
        assert steps is not None
        z_a, z_b = numbers(body, "from", d), numbers(body, "to", d)
        t = np.linspace(0.0, 1.0, steps)[:, None]
        codes = (1 - t) * z_a + t * z_b
        return self._ok({"z": codes.tolist(), "outputs": run.decode(codes, label, point)})

    def _condition(self, run: ExploredRun, body: dict[str, Any]) -> tuple[int | None, int | None]:
        schema = run.model.schema
        label = integer(body, "label", 0, max(schema.n_classes - 1, 0)) if schema.condition == "label" else None
        if schema.condition != "label" and body.get("label") is not None:
            raise bad("this run's model is not label-conditional: drop \"label\"")
        point = integer(body, "point", 0, run.n_points - 1)
        return label, point

    @staticmethod
    def _allow(method: str, allowed: str) -> None:
        if method != allowed and not (allowed == "GET" and method == "HEAD"):
            raise HTTPError("405 Method Not Allowed", f"use {allowed} here")

    def _ok(self, obj: Any) -> tuple[str, bytes, str]:
        return "200 OK", self._json(obj), "application/json"
