"""Training on several processes (vaekit.train.dist): real torch.distributed with gloo on 127.0.0.1, in real
processes launched by torchrun (``python -m torch.distributed.run``) or by ``vaekit train --train.nproc N``.

* 2 processes reach the parameters of 1 process with the same global batch (an autoencoder on statically
  binarised digits, so no sampling noise: what differs is only the order of float reductions);
* a two-"node" run (two launchers, ``--nnodes 2``, c10d rendezvous on 127.0.0.1) trains; a run whose rank 1
  dies (SIGKILL) stops with one line, and ``vaekit train --resume`` finishes it bit-identically to the
  uninterrupted two-node run; resumed on 1 process it finishes with a note of what is not reproduced.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_runs import STEPS, tiny_config

from vaekit import checkpoint as ckpt
from vaekit import train
from vaekit.errors import VaekitError
from vaekit.train import dist

SRC = Path(__file__).resolve().parents[1] / "src"
# 2 epochs of 23 global batches of 64 (the last one 29 rows: shares of 15 and 14 rows on 2 processes)
TINY_ARGS = ["--model.hidden", "16", "--model.latent_dim", "2", "--train.epochs", "2", "--train.batch_size", "64",
             "--train.device", "cpu", "--train.max_bad_steps", "3", "--no-progress", "--no-artifacts", "--no-report"]
AE = {"model.kind": "ae", "data.binarize": "static"}
TIMING = ("samples_per_s", "epoch_time_s")


def _env(**extra: str) -> dict[str, str]:
    """The environment of a launched run: this tree's vaekit, one thread per process, a 60 s timeout."""
    env = {k: v for k, v in os.environ.items() if k != dist.KILL_ENV}
    return {**env, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
            "OMP_NUM_THREADS": "1", dist.TIMEOUT_ENV: "60", **extra}


def _run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env or _env(), capture_output=True, text=True,
                          timeout=300)


def _ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _last(run: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """The weights and the trainer state of ``run``'s last checkpoint."""
    path = ckpt.read_pointer(run / "checkpoints", "last")
    assert path is not None, f"{run} has no last checkpoint"
    return ckpt.load_tensors(path / ckpt.MODEL_FILE), json.loads((path / ckpt.TRAINER_JSON).read_text())


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


# ------------------------------------------------------------------------------- the pure parts
@pytest.mark.parametrize(("n", "world"), [(64, 2), (29, 2), (7, 3), (5, 1)])
def test_shares_cover_the_batch_and_weighted_means_give_the_global_mean(n: int, world: int) -> None:
    idx = torch.randperm(100)[:n]
    losses = torch.randn(100, dtype=torch.float64)
    shares = [dist.shard_rows(idx, r, world) for r in range(world)]
    assert torch.equal(torch.cat([rows for rows, _ in shares]), idx)  # contiguous, in order, each row once
    assert max(len(r) for r, _ in shares) - min(len(r) for r, _ in shares) <= 1
    # DDP averages the processes' gradients: the mean of weighted means must be the mean over the batch
    averaged = sum(weight * losses[rows].mean() for rows, weight in shares) / world
    torch.testing.assert_close(averaged, losses[idx].mean())


def test_a_batch_with_fewer_rows_than_processes_is_refused() -> None:
    dist.check_batches(1437, 64, 2)  # last batch 29 rows
    dist.check_batches(8, 1, 1)
    with pytest.raises(VaekitError, match="leaves a batch of 1 rows, fewer than the 2 processes"):
        dist.check_batches(129, 64, 2)
    with pytest.raises(VaekitError, match="train.batch_size 2 .* fewer than the 4 processes"):
        dist.check_batches(100, 2, 4)


def test_world_note_names_what_is_not_reproduced() -> None:
    assert dist.world_note(23, 2, 2) is None
    more = dist.world_note(23, 1, 3)
    assert more is not None and "resumed at step 23 on 3 process(es) from a checkpoint written by 1" in more
    assert "ranks 1..2 drew fresh noise streams" in more and "not bit-identical" in more
    fewer = dist.world_note(23, 2, 1)
    assert fewer is not None and "the noise streams of ranks 1..1 were dropped" in fewer


# ------------------------------------------------------------------------------- real processes
def test_two_processes_reach_the_parameters_of_one(tmp_path: Path) -> None:
    _, one = train.fit(tiny_config(**AE), runs_root=None)
    args = [f"--{k}={v}" for k, v in AE.items()]
    _ok(_run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "vaekit", "train",
              *TINY_ARGS, *args, "--name", "two", "--runs", str(tmp_path)], tmp_path))
    weights, state = _last(tmp_path / "two")
    assert state["step"] == 2 * STEPS and state["world_size"] == 2
    expected = one.model.state_dict()
    assert set(weights) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(weights[name], value, rtol=1e-4, atol=1e-5, msg=name)
    rows = _rows(tmp_path / "two")
    assert len(rows) == len(one.metrics) == 2
    for got, want in zip(rows, one.metrics, strict=True):  # the reduced training and validation sums
        for key in ("train_loss", "train_recon", "val_elbo", "val_recon"):
            assert got[key] == pytest.approx(want[key], rel=1e-5), key


@pytest.fixture(scope="module")
def two_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A VAE trained by two launchers, one process each (``--nnodes 2``), meeting at a c10d rendezvous."""
    root = tmp_path_factory.mktemp("two-node")
    endpoint = f"127.0.0.1:{_free_port()}"
    launchers = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(node),
         "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", "vaekit-test",
         "-m", "vaekit", "train", *TINY_ARGS, "--name", "vae", "--runs", str(root)],
        cwd=root, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for node in (0, 1)]
    try:
        outputs = [p.communicate(timeout=300) for p in launchers]
    finally:
        for p in launchers:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(launchers, outputs, strict=True):
        assert p.returncode == 0, out[-3000:] + err[-3000:]
    return root / "vae"


def test_two_node_run_trains_every_step_once(two_node: Path) -> None:
    _, state = _last(two_node)
    assert state["step"] == 2 * STEPS and state["epoch"] == 2 and state["world_size"] == 2
    rows = _rows(two_node)
    assert [r["epoch"] for r in rows] == [1, 2] and all(r["skipped_steps"] == 0 for r in rows)
    assert rows[1]["val_elbo"] > rows[0]["val_elbo"]  # it learned
    tensors = ckpt.load_tensors(ckpt.read_pointer(two_node / "checkpoints", "last") / ckpt.TRAINER_TENSORS)
    # every process's streams are saved: rank 1's noise differs from rank 0's, the shuffle is shared
    assert not torch.equal(tensors["rng.torch"], tensors["rank1.rng.torch"])
    assert torch.equal(tensors["rng.shuffle"], tensors["rank1.rng.shuffle"])


def test_killed_process_stops_the_run_and_resume_finishes_it_exactly(two_node: Path, tmp_path: Path) -> None:
    killed = _run(["-m", "vaekit", "train", *TINY_ARGS, "--train.nproc", "2", "--name", "vae", "--runs",
                   str(tmp_path)], tmp_path, _env(**{dist.KILL_ENV: f"1:{STEPS + 7}"}))
    assert killed.returncode == 2, killed.stdout[-3000:] + killed.stderr[-3000:]
    run = tmp_path / "vae"
    last_line = killed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("vaekit: error: training process 1 of 2 (pid "), killed.stderr[-3000:]
    assert last_line.endswith(f"was killed by SIGKILL, so the run stopped; the last checkpoint is intact: continue "
                              f"with `vaekit train --resume {run}`")
    assert _last(run)[1]["step"] == STEPS  # epoch 1's checkpoint; epoch 2 was cut at step 30
    other = tmp_path / "other"
    shutil.copytree(run, other)

    resumed = _ok(_run(["-m", "vaekit", "train", "--resume", str(run), "--no-progress", "--no-artifacts",
                        "--no-report"], tmp_path))  # the saved train.nproc 2: two processes again
    assert "trained 2 epochs (46 steps, 0 skipped)" in resumed.stdout
    weights, state = _last(run)
    reference, reference_state = _last(two_node)
    assert state["world_size"] == 2 and state["step"] == reference_state["step"]
    for name, value in reference.items():
        assert torch.equal(weights[name], value), name  # the same world size: bit-identical
    assert _rows(run) == _rows(two_node)

    single = _ok(_run(["-m", "vaekit", "train", "--resume", str(other), "--train.nproc", "1", "--no-progress",
                       "--no-artifacts", "--no-report"], tmp_path))
    note = f"resumed at step {STEPS} on 1 process(es) from a checkpoint written by 2"
    assert note in single.stdout
    _, state = _last(other)
    assert state["world_size"] == 1 and state["step"] == 2 * STEPS
    assert any(note in line for line in state["history"])
