"""Issue #8, files and concurrency (items 13-16), with real file systems and real processes.

* 13: a full disk (a real tmpfs of a few pages, mounted here) ends every write path in one line naming the
  file, exit 2, no temporary left, the previous file or checkpoint intact, and a resume works once there
  is space again.
* 14: outputs are probed for writability before any computation (a read-only tmpfs), and ``vaekit eval``
  takes ``--out FILE`` (``out=`` in ``evaluate_run``).
* 15: ``vaekit train`` / ``--resume`` hold an exclusive lock on the run; a second writer is refused with the
  holder's pid before it changes any file; a lock file left by a SIGKILLed holder does not block.
* 16: every file vaekit writes gets the mode an ordinary write would (the umask), not mkstemp's 0600.

Mounting needs root (as on this machine and in CI); without it the tmpfs tests skip, saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import run_vaekit
from http_helpers import serve

from vaekit import checkpoint as ckpt
from vaekit.errors import VaekitError
from vaekit.fileio import atomic_write_bytes, atomic_write_text, check_writable

TINY = ["--model.hidden", "16", "--model.latent_dim", "2", "--train.device", "cpu", "--no-progress"]
QUICK_EVAL = ["--k", "4", "--naive-k", "4", "--batch-size", "64"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# ------------------------------------------------------------------------------------ helpers
@contextlib.contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A real tmpfs of ``size`` (e.g. '80k') mounted at ``where`` for the block."""
    where.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def remount(where: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(where)], check=True)


def fill(disk: Path) -> None:
    """Write a filler file until the file system is full."""
    with open(disk / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (paths relative to it)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    """The CLI failed as documented: exit 2, one line 'vaekit: error: ...', no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("vaekit: error: ")]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def temporaries(root: Path) -> list[str]:
    return sorted(str(p) for p in root.rglob(".*") if ".tmp" in p.name or ".part" in p.name)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished two-epoch digits run (no artifacts, no report)."""
    root = tmp_path_factory.mktemp("digits")
    run_vaekit("train", "--name", "d", "--runs", str(root), *TINY, "--train.epochs", "2", "--no-artifacts",
               "--no-report", check=True, env=ENV)
    return root / "d"


@pytest.fixture(scope="module")
def npy_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A one-epoch run on a user .npy file of 8x8 images in [0, 1]; returns (run, data file)."""
    root = tmp_path_factory.mktemp("npy")
    x = np.random.default_rng(0).random((200, 8, 8), dtype=np.float32)
    data = root / "x.npy"
    np.save(data, x)
    run_vaekit("train", "--name", "n", "--runs", str(root), "--data.path", str(data), *TINY, "--train.epochs",
               "1", "--train.batch_size", "32", "--no-artifacts", "--no-report", check=True, env=ENV)
    return root / "n", data


# ------------------------------------------------------------------------ 16: file modes
@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_write_gives_new_files_the_umask_mode(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        path = atomic_write_text(tmp_path / "new.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_atomic_rewrite_keeps_the_files_mode(tmp_path: Path) -> None:
    path = tmp_path / "report.html"
    path.write_text("old")
    path.chmod(0o640)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


@pytest.mark.parametrize("mask", [0o022, 0o002])
def test_every_file_a_real_run_writes_follows_the_umask(tmp_path: Path, mask: int) -> None:
    """train (checkpoints, pointers, config, metrics, grids, report), eval, sample .npy, encode."""
    old = os.umask(mask)  # the subprocesses inherit it
    try:
        run_vaekit("train", "--name", "m", "--runs", str(tmp_path), *TINY, "--train.epochs", "2", check=True,
                   env=ENV)
        run = tmp_path / "m"
        run_vaekit("eval", str(run), *QUICK_EVAL, check=True, env=ENV)
        run_vaekit("sample", str(run), "-n", "4", "--out", str(tmp_path / "s.npy"), check=True, env=ENV)
        run_vaekit("encode", str(run), "--out", str(tmp_path / "z.npy"), check=True, env=ENV)
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"model.safetensors", "trainer.safetensors", "meta.json", "trainer.json", "last", "best",
            "config.toml", "metrics.jsonl", "samples.png", "reconstructions.png", "report.html", "eval.json",
            "s.npy", "z.npy"} <= names
    modes = {str(p.relative_to(tmp_path)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~mask)}, modes
    dirs = {str(p): oct(stat.S_IMODE(p.stat().st_mode)) for p in tmp_path.rglob("*") if p.is_dir()}
    assert set(dirs.values()) == {oct(0o777 & ~mask)}, dirs


# ------------------------------------------------------------------- 13: a full disk, one line
def test_checkpoint_hitting_a_full_disk_is_one_line_and_the_run_resumes(tmp_path: Path) -> None:
    """80 KiB hold the config and the first checkpoint (~56 KiB in 4 KiB pages) but not the second."""
    with tmpfs(tmp_path / "disk", "80k") as disk:
        proc = run_vaekit("train", "--name", "r", "--runs", str(disk), *TINY, "--train.epochs", "3",
                          "--no-artifacts", "--no-report", env=ENV)
        line = one_error_line(proc)
        ckpts = disk / "r" / "checkpoints"
        assert "cannot write" in line and "No space left on device" in line, line
        assert str(ckpts) in line and "--resume" in line, line
        assert temporaries(disk) == []
        first = ckpt.read_pointer(ckpts, "last")
        assert first is not None and first.name == "step-000000012"
        assert sorted(p.name for p in ckpts.iterdir()) == ["best", "last", "step-000000012"]
        before = snapshot(first)
        from vaekit.api import load

        load(first)  # whole and loadable
        remount(disk, "size=4m")  # free space
        run_vaekit("train", "--resume", str(disk / "r"), "--no-progress", "--no-artifacts", "--no-report",
                   check=True, env=ENV)
        assert ckpt.read_pointer(ckpts, "last").name == "step-000000036"
        assert snapshot(first) == before or not first.exists()  # untouched (or pruned by keep_last)
        epochs = [json.loads(line)["epoch"] for line in (disk / "r" / "metrics.jsonl").read_text().splitlines()]
        assert epochs == [1, 2, 3]


@pytest.mark.parametrize("size, file", [("8k", "metrics.jsonl"), ("12k", "checkpoints/step-000000012")])
def test_a_full_disk_before_the_first_checkpoint_does_not_promise_one(tmp_path: Path, size: str, file: str) -> None:
    """8 KiB hold the config but not the first metrics line; 12 KiB that line but not the first checkpoint."""
    with tmpfs(tmp_path / "disk", size) as disk:
        proc = run_vaekit("train", "--name", "r", "--runs", str(disk), *TINY, "--train.epochs", "2",
                          "--no-artifacts", "--no-report", env=ENV)
        line = one_error_line(proc)
        assert f"cannot write {disk / 'r' / file}: No space left on device" in line, line
        assert "no checkpoint was written yet" in line and "intact" not in line, line
        assert temporaries(disk) == []


@pytest.mark.parametrize("command", ["eval", "sample-png", "sample-npy", "report"])
def test_output_on_a_full_disk_names_the_file_and_keeps_the_old_one(tmp_path: Path, digits_run: Path,
                                                                    command: str) -> None:
    with tmpfs(tmp_path / "disk", "2m") as disk:
        run = disk / "run"
        shutil.copytree(digits_run, run)
        target = {"eval": run / "eval.json", "sample-png": disk / "s.png", "sample-npy": disk / "s.npy",
                  "report": run / "report.html"}[command]
        target.write_text("the good old file\n")
        args = {"eval": ["eval", str(run), *QUICK_EVAL], "report": ["report", str(run)],
                "sample-png": ["sample", str(run), "--out", str(target)],
                "sample-npy": ["sample", str(run), "--out", str(target)]}[command]
        fill(disk)
        line = one_error_line(run_vaekit(*args, env=ENV))
        assert f"cannot write {target}: No space left on device" in line, line
        assert target.read_text() == "the good old file\n"
        assert temporaries(disk) == []


BODY = bytes(range(256)) * 256  # 64 KiB


@contextlib.contextmanager
def http_server() -> Iterator[str]:
    """A server answering /file with :data:`BODY`."""
    with serve(files={"file": BODY}) as (url, _):
        yield url


def test_download_onto_a_full_disk_names_the_file_and_keeps_nothing(tmp_path: Path) -> None:
    from vaekit.data.download import fetch

    with tmpfs(tmp_path / "disk", "32k") as disk, http_server() as url:
        dest = disk / "mnist" / "train-images-idx3-ubyte.gz"
        with pytest.raises(VaekitError, match=rf"cannot write {dest}: No space left on device; free space"):
            fetch(f"{url}/file", dest, timeout=5)
        assert sorted(p.name for p in dest.parent.iterdir()) == []


def test_download_gets_the_umask_mode(tmp_path: Path) -> None:
    from vaekit.data.download import fetch

    old = os.umask(0o002)
    try:
        with http_server() as url:
            dest = fetch(f"{url}/file", tmp_path / "f.bin", hashlib.sha256(BODY).hexdigest(), timeout=5)
    finally:
        os.umask(old)
    assert stat.S_IMODE(dest.stat().st_mode) == 0o664


# ------------------------------------------------------- 14: check before computing, --out
@pytest.fixture
def read_only_npy_run(tmp_path: Path, npy_run: tuple[Path, Path]) -> Iterator[tuple[Path, Path]]:
    """A copy of the .npy run on a read-only tmpfs, whose data file is gone: any command that computed
    before checking its output would fail on the data instead of on the read-only folder."""
    run, data = npy_run
    with tmpfs(tmp_path / "ro", "1m") as disk:
        shutil.copytree(run, disk / "n")
        remount(disk, "ro")
        hidden = data.with_suffix(".away")
        data.rename(hidden)
        try:
            yield disk / "n", tmp_path
        finally:
            hidden.rename(data)


@pytest.mark.parametrize("command", ["eval", "report", "reconstruct", "encode", "sample"])
def test_read_only_output_is_refused_before_any_computation(read_only_npy_run: tuple[Path, Path],
                                                            command: str) -> None:
    run, _ = read_only_npy_run
    before = snapshot(run.parent)
    out = {"eval": [], "report": [], "reconstruct": ["--out", str(run / "r.npy")],
           "encode": ["--out", str(run / "z.npy")], "sample": ["--out", str(run / "s.npy")]}[command]
    line = one_error_line(run_vaekit(command, str(run), *out, env=ENV))
    assert f"cannot write in {run}: Read-only file system" in line, line
    assert "--out FILE" in line, line
    assert snapshot(run.parent) == before


def test_compare_train_checks_its_out_before_training(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "64k") as disk:
        remount(disk, "ro")
        proc = run_vaekit("compare", "--train", "ae,vae", "--runs", str(tmp_path / "runs"), "--name", "c",
                          "--out", str(disk / "c.html"), "--model.hidden", "16", "--no-progress", env=ENV)
        line = one_error_line(proc)
    assert f"cannot write in {disk}: Read-only file system" in line, line
    assert not (tmp_path / "runs" / "c").exists()  # nothing was trained


def test_eval_out_writes_eval_json_elsewhere(tmp_path: Path, digits_run: Path) -> None:
    with tmpfs(tmp_path / "ro", "1m") as disk:
        shutil.copytree(digits_run, disk / "run")
        remount(disk, "ro")
        out = tmp_path / "elsewhere" / "e.json"
        out.parent.mkdir()
        proc = run_vaekit("eval", str(disk / "run"), *QUICK_EVAL, "--out", str(out), check=True, env=ENV)
        assert f"wrote {out}" in proc.stdout
        result = json.loads(out.read_text())
        assert result["k"] == 4 and np.isfinite(result["log_likelihood_nats"])
        assert not (disk / "run" / "eval.json").exists()


def test_evaluate_run_out_and_its_early_check_in_python(tmp_path: Path, digits_run: Path) -> None:
    from vaekit.evaluate import evaluate_run

    out = tmp_path / "e.json"
    result = evaluate_run(digits_run, k=4, naive_k=4, out=out)
    assert json.loads(out.read_text())["log_likelihood_nats"] == result["log_likelihood_nats"]
    with pytest.raises(VaekitError, match=r"output folder .*missing does not exist; .*out="):
        evaluate_run(digits_run, k=0, out=tmp_path / "missing" / "e.json")  # before --k is even looked at


def test_check_writable_probes_for_real_even_as_root(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "ro", "64k") as disk:
        remount(disk, "ro")
        with pytest.raises(VaekitError, match=r"cannot write in .*: Read-only file system"):
            check_writable(disk / "out.png")


# --------------------------------------------------------------------- 15: one writer per run
def _wait(ready: Callable[[], bool], proc: subprocess.Popen | None = None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"process ended early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


@contextlib.contextmanager
def _train(args: list[str], pause: str | None = None) -> Iterator[subprocess.Popen]:
    """``vaekit train ARGS`` in the background (each checkpoint pausing ``pause`` s before its rename);
    killed at the end of the block if it is still running."""
    env = dict(ENV)
    if pause:
        env[ckpt.PAUSE_ENV] = pause
    proc = subprocess.Popen([sys.executable, "-m", "vaekit", "train", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        if proc.returncode is None:  # not reaped by the test: stop it
            proc.kill()
            proc.communicate(timeout=60)


def test_resume_is_refused_while_another_process_holds_the_run(digits_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from vaekit.runlock import run_lock\n"
                               f"with run_lock({str(run)!r}):\n    print('locked', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = snapshot(run)
        line = one_error_line(run_vaekit("train", "--resume", str(run), "--no-progress", env=ENV))
        assert f"pid {holder.pid}" in line and f"kill {holder.pid}" in line, line
        assert snapshot(run) == before
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    assert not (run / ".lock").exists()  # a clean holder removes its lock file


def test_second_resume_of_a_run_still_training_is_refused_and_the_first_finishes(tmp_path: Path) -> None:
    """The reported case: the second writer used to delete the first's checkpoint in progress."""
    ckpts = tmp_path / "a" / "checkpoints"
    with _train(["--name", "a", "--runs", str(tmp_path), *TINY, "--train.epochs", "1", "--no-artifacts",
                 "--no-report"], pause="20") as first:
        _wait(lambda: ckpts.is_dir() and any(p.name.startswith(".step-") for p in ckpts.iterdir()), first)
        second = run_vaekit("train", "--resume", str(tmp_path / "a"), "--no-progress", env=ENV)
        still_running = first.poll() is None
        _, err = first.communicate(timeout=300)
    line = one_error_line(second)
    assert still_running, "the first run ended before the second started; the test proved nothing"
    assert f"pid {first.pid}" in line and "in use" in line, line
    assert first.returncode == 0, err
    assert ckpt.read_pointer(ckpts, "last").name == "step-000000012"
    from vaekit.api import load

    load(tmp_path / "a")


def test_a_lock_file_left_by_a_killed_run_does_not_block_resume(tmp_path: Path) -> None:
    ckpts = tmp_path / "k" / "checkpoints"
    lock = tmp_path / "k" / ".lock"
    with _train(["--name", "k", "--runs", str(tmp_path), *TINY, "--train.epochs", "2", "--no-artifacts",
                 "--no-report"], pause="5") as first:  # killed while its second checkpoint pauses
        _wait(lambda: (ckpts / "last").exists() and any(p.name.startswith(".step-") for p in ckpts.iterdir()),
              first)
        assert f"pid={first.pid}" in lock.read_text()
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    assert lock.exists()  # left behind, naming a dead process
    run_vaekit("train", "--resume", str(tmp_path / "k"), "--no-progress", "--no-artifacts", "--no-report",
               check=True, env=ENV)
    assert ckpt.read_pointer(ckpts, "last").name == "step-000000024"
    assert not lock.exists()
