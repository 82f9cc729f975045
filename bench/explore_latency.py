"""Decode latency of the latent explorer: HTTP round trips to a real ``vaekit explore`` server.

Usage: python bench/explore_latency.py [--data-dir ../shared/data] [--requests 300] [--runs RUN ...]

Without ``--runs`` it trains two MNIST-sized runs first (784 inputs, one hidden layer of 512, d = 2 and
d = 16; one epoch on 2,000 images: latency does not depend on how well a model is trained) into a
temporary folder. For each run it starts ``python -m vaekit explore RUN --port 0`` (waitress, loopback),
then times, over one keep-alive connection as the page uses, ``--requests`` requests of each kind:

* ``decode z``: POST /api/runs/0/decode {"z": random code} (slider moves);
* ``decode map``: POST /api/runs/0/decode {"map": [u, v], "method": latent | pca} (clicks and drags);
* ``point``: GET /api/runs/0/points/j (hover: input and reconstruction).

Each time is the full round trip as the client sees it: request, JSON parsing and validation, model.decode,
PNG encoding, response. Prints the median and 95th percentile in milliseconds. Goal: < 50 ms per decode.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from machine import cpu_name

SRC = Path(__file__).resolve().parents[1] / "src"


def train_runs(root: Path, data_dir: str) -> list[Path]:
    """Two MNIST-sized runs (d = 2, d = 16) trained for one epoch on 2,000 images."""
    runs = []
    for d in (2, 16):
        name = f"mnist-d{d}"
        subprocess.run([sys.executable, "-m", "vaekit", "train", "--runs", str(root), "--name", name,
                        "--data.name", "mnist", "--data.dir", data_dir, "--data.limit", "2000",
                        "--model.hidden", "512", "--model.latent_dim", str(d), "--train.epochs", "1",
                        "--no-progress", "--no-artifacts", "--no-report"], check=True, env=_env(),
                       stdout=subprocess.DEVNULL)
        runs.append(root / name)
    return runs


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}


def timed(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> float:
    """Milliseconds of one request's round trip (the response read in full and parsed)."""
    data = None if body is None else json.dumps(body)
    start = time.perf_counter()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    payload = resp.read()
    json.loads(payload)
    elapsed = (time.perf_counter() - start) * 1000
    if resp.status != 200:
        raise RuntimeError(f"{method} {path}: {resp.status} {payload[:200]!r}")
    return elapsed


def measure(run: Path, n: int, seed: int = 0) -> dict[str, list[float]]:
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "explore", str(run), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env())
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        host_port = line.split("http://", 1)[1].split("/", 1)[0]
        host, port = host_port.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        info = json.loads(_get(conn, "/api/runs"))["runs"][0]
        d, method = info["latent_dim"], next(iter(info["methods"]))
        points = np.asarray(json.loads(_get(conn, f"/api/runs/0/map?method={method}"))["points"])
        lo, hi = points.min(0), points.max(0)
        rng = np.random.default_rng(seed)
        out: dict[str, list[float]] = {"decode z": [], f"decode map ({method})": [], "point": []}
        for i in range(n + 10):  # the first 10 of each kind warm up and are not counted
            t_z = timed(conn, "POST", "/api/runs/0/decode", {"z": rng.normal(size=d).tolist()})
            t_map = timed(conn, "POST", "/api/runs/0/decode",
                          {"map": (lo + (hi - lo) * rng.random(2)).tolist(), "method": method})
            t_point = timed(conn, "GET", f"/api/runs/0/points/{int(rng.integers(len(points)))}")
            if i >= 10:
                out["decode z"].append(t_z)
                out[f"decode map ({method})"].append(t_map)
                out["point"].append(t_point)
        conn.close()
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _get(conn: http.client.HTTPConnection, path: str) -> bytes:
    conn.request("GET", path)
    resp = conn.getresponse()
    return resp.read()




def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="HTTP round-trip latency of vaekit explore's decodes")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--runs", nargs="*", type=Path, help="existing runs (default: train MNIST-sized d=2, d=16)")
    args = p.parse_args(argv)
    import torch

    print(json.dumps({"cpu": cpu_name(), "cores": os.cpu_count(),
                      "torch": torch.__version__, "threads": torch.get_num_threads(),
                      "python": platform.python_version(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                      "loadavg_start": list(os.getloadavg())}))
    with tempfile.TemporaryDirectory() as tmp:
        runs = args.runs or train_runs(Path(tmp), args.data_dir)
        print(f"\n{args.requests} requests of each kind, one keep-alive connection, times in ms:")
        print("| run | request | median | p95 | max |")
        print("|---|---|---|---|---|")
        for run in runs:
            for kind, times in measure(run, args.requests).items():
                q = np.percentile(times, [50, 95])
                print(f"| {run.name} | {kind} | {statistics.median(times):.1f} | {q[1]:.1f} | {max(times):.1f} |")


if __name__ == "__main__":
    main()
