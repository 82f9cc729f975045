"""CPU threads: the bounded OpenMP spin vaekit asks for, train.threads, and the free-core count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_helpers import run_vaekit

from vaekit.config import Config, apply_overrides
from vaekit.errors import VaekitError

SRC = str(Path(__file__).resolve().parents[1] / "src")
PROBE = "import os, vaekit, torch; print(os.environ.get('GOMP_SPINCOUNT'))"
#: One core's worth of load for 30 s at most: a pure-Python busy loop.
BUSY_LOOP = "import time\nend = time.time() + 30\nwhile time.time() < end: pass"


def _policy(env_extra: dict[str, str], code: str = PROBE) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "VAEKIT_OMP_POLICY", "GOMP_SPINCOUNT")}
    env.update(PYTHONPATH=SRC, **env_extra)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_importing_vaekit_first_bounds_openmps_spinning() -> None:
    assert _policy({}) == "5000"


def test_a_users_choice_is_kept() -> None:
    assert _policy({"GOMP_SPINCOUNT": "5"}) == "5"
    assert _policy({"OMP_WAIT_POLICY": "ACTIVE"}) == "None"
    assert _policy({"VAEKIT_OMP_POLICY": "keep"}) == "None"


def test_nothing_is_set_once_torch_is_loaded() -> None:
    """OpenMP read its policy when torch loaded it: setting the variable later would only mislead."""
    code = "import os, torch, vaekit; print(os.environ.get('GOMP_SPINCOUNT'))"
    assert _policy({}, code) == "None"


def test_train_threads_sets_torchs_thread_count(tmp_path: Path) -> None:
    code = ("import sys, torch; from vaekit import train; from vaekit.config import Config, apply_overrides; "
            "from vaekit.data import load_data; "
            "c = apply_overrides(Config(), {'train.threads': '1', 'model.hidden': '8', 'train.epochs': '1'}); "
            "train.Trainer(c, None, load_data(c.data, c.model.likelihood)); print(torch.get_num_threads())")
    assert _policy({}, code) == "1"


def test_free_cores_subtract_what_other_processes_used() -> None:
    """A busy-loop process beside a fresh Python that imports vaekit and waits: the CPU it used shows as about
    one core elsewhere, and the free-core count (-1) leaves it out; 0 and N are taken as given."""
    code = ("import time, torch; torch.set_num_threads(2); from vaekit import threads; time.sleep(1.5); "
           "print(round(threads.busy_elsewhere(), 1), threads.choose_threads(-1), threads.choose_threads(0), "
           "threads.choose_threads(3))")
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)
        others, free, default, fixed = _policy({}, code).split()
    finally:
        busy.kill()
        busy.wait()
    assert float(others) >= 0.8  # the busy loop's core (other load on the machine only adds to it)
    cores = len(os.sched_getaffinity(0))
    assert int(free) == max(1, min(2, round(cores - float(others))))
    assert (int(default), int(fixed)) == (2, 3)


@pytest.mark.parametrize("bad", ["-2", "2000"])
def test_threads_out_of_range_is_a_one_line_error(bad: str) -> None:
    with pytest.raises(VaekitError, match=r"train.threads.*-1\.\.1024"):
        apply_overrides(Config(), {"train.threads": bad})


def test_resume_may_change_threads_only_as_a_launch_option(tmp_path: Path) -> None:
    tiny = ["--model.hidden", "8", "--data.limit", "200", "--no-progress", "--no-report", "--no-artifacts"]
    run_vaekit("train", "--name", "t", "--train.epochs", "1", *tiny[:4], "--no-progress", "--no-report",
               "--no-artifacts", cwd=tmp_path, check=True)
    run = tmp_path / "runs" / "t"
    cfg = (run / "config.toml").read_text().replace("epochs = 1", "epochs = 2")
    (run / "config.toml").write_text(cfg)

    def follows_load() -> bool:  # the last checkpoint's way of choosing its threads (the free cores: True)
        last = (run / "checkpoints" / "last").read_text().strip()
        return bool(json.loads((run / "checkpoints" / last / "trainer.json").read_text())["threads_auto"])

    assert follows_load()  # started on the free cores (-1, the default)
    run_vaekit("train", "--resume", str(run), "--train.threads", "1", "--no-progress", "--no-report",
               "--no-artifacts", cwd=tmp_path, check=True)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert not follows_load()  # a count given at the resume replaces it
    proc = run_vaekit("train", "--resume", str(run), "--train.lr", "0.1", cwd=tmp_path)
    assert proc.returncode == 2 and "--train.device, --train.nproc and --train.threads may be given" in proc.stderr


def test_the_free_core_count_is_the_default_and_saved_as_the_number_chosen(tmp_path: Path) -> None:
    """train.threads = -1 by default; the run's config.toml and its checkpoints record the count it trained
    with (not -1), so its resume continues with that count."""
    from vaekit.checkpoint import read_meta, resolve_checkpoint
    from vaekit.config import TrainConfig, load_config
    from vaekit.train.runs import continued_config

    assert TrainConfig().threads == -1
    run_vaekit("train", "--name", "t", "--train.epochs", "1", "--model.hidden", "8", "--data.limit", "200",
               "--no-progress", "--no-report", "--no-artifacts", cwd=tmp_path, check=True)
    run = tmp_path / "runs" / "t"
    saved = load_config(run / "config.toml").train.threads
    assert 1 <= saved <= len(os.sched_getaffinity(0))
    assert read_meta(resolve_checkpoint(run))["config"]["train"]["threads"] == saved
    assert continued_config(run).train.threads == saved


def test_the_free_core_count_is_decided_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first -1 of a process decides; a later run in it (a notebook, a grid search) trains with the same
    count even when the load changed in between."""
    import torch

    from vaekit import threads

    monkeypatch.setattr(threads, "_AUTO", None)
    load = iter([1.2, 0.0])
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: next(load))
    first = threads.choose_threads(-1)
    assert first == max(1, min(torch.get_num_threads(), round(len(os.sched_getaffinity(0)) - 1.2)))
    assert threads.choose_threads(-1) == first
    assert threads.choose_threads(0) == torch.get_num_threads() and threads.choose_threads(3) == 3


def test_a_stale_start_window_is_measured_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process that imported vaekit minutes ago (idle then) measures the load of now: a busy loop started
    since counts as about one core, where the old window would have averaged it away."""
    from vaekit import threads

    busy_now, total_now = threads._cpu_jiffies() or (0, 0)
    idle_past = total_now - 100 * 600 * (os.cpu_count() or 1)  # ten idle minutes of jiffies before now
    monkeypatch.setattr(threads, "_START", (time.monotonic() - 600, (busy_now, idle_past), threads._own_cpu(),
                                            threads._background_cpu()))
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    try:
        time.sleep(0.5)
        others = threads.busy_elsewhere()
    finally:
        busy.kill()
        busy.wait()
    assert others is not None and others >= 0.8


def test_vaekits_own_background_report_is_not_counted_as_load() -> None:
    """A busy loop registered as vaekit background work (the mark the report `vaekit train` leaves running
    writes) beside a fresh Python that imports vaekit and waits: its CPU is counted as vaekit's background
    (about a core; other load on the machine only shows in the total) and left out of busy_elsewhere; a
    killed one's mark is cleared by the next reader."""
    from vaekit import threads

    loop = ("import os, time; from vaekit.threads import background_dir\n"
            "background_dir().mkdir(exist_ok=True); (background_dir() / str(os.getpid())).touch()\n"
            "end = time.time() + 30\nwhile time.time() < end: pass")
    busy = subprocess.Popen([sys.executable, "-c", loop], env={**os.environ, "PYTHONPATH": SRC})
    mark = threads.background_dir() / str(busy.pid)
    try:
        for _ in range(100):  # registered once its imports are done
            if mark.exists():
                break
            time.sleep(0.1)
        assert mark.exists()
        code = ("import time; from vaekit import threads; time.sleep(1.5); w = threads.cpu_window(); "
                "print(*w, threads.busy_elsewhere())")
        everyone, mine, background, elsewhere = (float(v) for v in _policy({}, code).split())
    finally:
        busy.kill()
        busy.wait()
    assert background >= 0.4  # the loop's share of the window (a full core on a quiet machine)
    assert elsewhere == pytest.approx(max(0.0, everyone - mine - background), abs=0.2)
    threads._background_cpu()
    assert not mark.exists()


def test_a_background_report_that_ends_within_the_window_still_counts() -> None:
    """A registered report that exits between two readings leaves its final CPU seconds in its mark: the CPU it
    used after the first reading (0.5 s here) is still counted as background, not as another user's load; an
    old final mark is removed by the next reader."""
    from vaekit import threads

    code = ("import sys, time; from vaekit.threads import register_background; register_background()\n"
            "print('ready', flush=True); sys.stdin.readline()\n"
            "end = time.process_time() + 0.5\nwhile time.process_time() < end: pass\n")
    with subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": SRC}, text=True,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE) as report:
        pid = str(report.pid)
        mark = threads.background_dir() / pid
        try:
            assert report.stdout is not None and report.stdout.readline().strip() == "ready"
            before = threads._background_cpu()
            assert pid in before and mark.read_text() == ""  # alive: read from /proc
            assert report.stdin is not None
            report.stdin.write("go\n")
            report.stdin.close()
            assert report.wait(timeout=60) == 0
            after = threads._background_cpu()
            assert float(mark.read_text()) == after[pid]  # exited: its final figure
            assert threads._background_delta(before, after) >= 0.45
            old = time.time() - threads.FINAL_MARK_TTL_S - 1
            os.utime(mark, (old, old))
            assert pid not in threads._background_cpu() and not mark.exists()
        finally:
            report.kill()
            mark.unlink(missing_ok=True)


def test_registered_background_work_takes_the_lowest_priority() -> None:
    """The registered process itself is niced; the scheduling group of a session it shares with others (here,
    the test run's) is left alone: only a session leader (the detached report) lowers its group's share."""
    group = Path("/proc/self/autogroup")
    before = group.read_text() if group.exists() else None
    code = ("import os; from vaekit.threads import register_background, background_dir; register_background(); "
            "print(os.getpriority(os.PRIO_PROCESS, 0), (background_dir() / str(os.getpid())).exists(), os.getpid())")
    nice, registered, pid = _policy({}, code).split()
    from vaekit.threads import background_dir

    (background_dir() / pid).unlink(missing_ok=True)  # its final mark would otherwise stay FINAL_MARK_TTL_S
    assert [nice, registered] == ["19", "True"]
    assert (group.read_text() if group.exists() else None) == before


BUSY_CHILD = f"import subprocess, sys; loop = subprocess.Popen([sys.executable, '-c', {BUSY_LOOP!r}])\n"


def test_the_governor_gives_a_core_to_a_process_that_starts_later_and_takes_it_back() -> None:
    """A fresh Python on 2 threads whose governor looks every 0.5 s: a busy loop started after it shows as about
    one core elsewhere and the count drops to the cores left free; once the loop is gone the count goes back up
    to the ceiling. Each decision is the free-core rule applied to what the governor measured."""
    code = ("import time, torch; torch.set_num_threads(2); from vaekit import threads\n"
            "g = threads.ThreadGovernor(2, period_s=0.5)\n" + BUSY_CHILD +
            "time.sleep(0.8); busy = g.poll(), torch.get_num_threads(), g.others\n"
            "loop.kill(); loop.wait(); time.sleep(0.1); g.poll()  # the window with the loop's end in it\n"
            "time.sleep(0.8); quiet = g.poll(), torch.get_num_threads(), g.others\n"
            "print(*busy, *quiet, len(g.changes))")
    out = _policy({}, code).split()
    busy_new, busy_count, busy_others = out[0], int(out[1]), float(out[2])
    quiet_count, quiet_others = int(out[4]), float(out[5])
    from vaekit.threads import free_count

    assert busy_others >= 0.8  # the loop's core (other load on the machine only adds to it)
    assert busy_count == free_count(2, busy_others)
    assert busy_new == ("None" if busy_count == 2 else str(busy_count))
    assert quiet_count == free_count(2, quiet_others)
    if len(os.sched_getaffinity(0)) == 2:  # this machine kind: the loop takes half of it, then gives it back
        assert (busy_count, quiet_count) == (1, 2) and quiet_others < 0.5


def test_a_free_core_run_follows_the_load_and_a_fixed_count_does_not(tmp_path: Path) -> None:
    """Trainers in a fresh Python, a busy loop started after they were built: the one on the free cores (-1)
    drops to the cores the loop left within its governor's period, the one with a fixed count keeps it; the
    run's checkpoint records which way it chooses (trainer.json threads_auto), so a resume goes on the same way."""
    code = ("import json, time, torch; torch.set_num_threads(2); from vaekit import threads, train\n"
            "from vaekit.config import apply_overrides, Config; from vaekit.data import load_data\n"
            "threads.GOVERN_PERIOD_S = 0.3\n"
            "def trainer(n, d):\n"
            "    c = apply_overrides(Config(), {'train.threads': n, 'model.hidden': '16', 'train.epochs': '40', "
            "'train.batch_size': '64'})\n"
            "    return train.Trainer(c, d, load_data(c.data, c.model.likelihood))\n"
            f"auto, fixed = trainer('-1', {str(tmp_path / 'a')!r}), trainer('2', None)\n" + BUSY_CHILD +
            "time.sleep(0.3); auto.fit(); a = torch.get_num_threads(), auto._governor.others\n"
            "torch.set_num_threads(2); fixed.fit(); b = torch.get_num_threads(), fixed._governor\n"
            "loop.kill(); print(auto.state.threads_auto, fixed.state.threads_auto, *a, *b)")
    (tmp_path / "a").mkdir()
    auto_flag, fixed_flag, auto_count, auto_others, fixed_count, fixed_governor = _policy({}, code).split()
    from vaekit.threads import free_count

    assert (auto_flag, fixed_flag, fixed_count, fixed_governor) == ("True", "False", "2", "None")
    assert int(auto_count) == free_count(2, float(auto_others)) and float(auto_others) >= 0.8
    saved = json.loads(next((tmp_path / "a" / "checkpoints").glob("step-*/trainer.json")).read_text())
    assert saved["threads_auto"] is True


def test_an_evaluation_follows_the_load_and_gives_torchs_count_back() -> None:
    """A job outside training (``vaekit eval``) in a fresh Python on 2 threads: within ``following_load(-1)`` a
    busy loop started meanwhile takes its core at the next due ``poll_load`` (the free-core rule applied to what
    was measured), and at exit torch's count and the outer (no) governor come back. A fixed count (1) has no
    governor: ``poll_load`` leaves it alone."""
    code = ("import time, torch; torch.set_num_threads(2); from vaekit import threads\n"
            "threads.GOVERN_PERIOD_S = 0.5\n"
            "with threads.following_load(-1) as start:\n" + "".join("    " + line + "\n" for line in
                                                                    BUSY_CHILD.splitlines()) +
            "    time.sleep(0.8); threads.poll_load(); auto = torch.get_num_threads(), threads._ACTIVE.others\n"
            "    loop.kill(); loop.wait()\n"
            "after = torch.get_num_threads(), threads._ACTIVE\n"
            "with threads.following_load(1) as one:\n"
            "    time.sleep(0.6); threads.poll_load(); fixed = torch.get_num_threads(), threads._ACTIVE\n"
            "print(start, *auto, *after, one, *fixed, torch.get_num_threads())")
    out = _policy({}, code).split()
    from vaekit.threads import free_count

    start, auto_count, others = int(out[0]), int(out[1]), float(out[2])
    assert start in (1, 2) and others >= 0.8
    assert auto_count == free_count(2, others)
    if len(os.sched_getaffinity(0)) == 2:
        assert auto_count == 1
    assert out[3:] == ["2", "None", "1", "1", "None", "2"]


def test_eval_threads_sets_the_evaluations_count_and_leaves_torchs_as_it_was(tmp_path: Path) -> None:
    """``--eval.threads 1`` evaluates on one thread (eval.json ``threads``) with the estimate of the default run up
    to float32 sums split differently, and torch's count after the call is the one before it; a count out of
    range is a one-line error naming the key."""
    import torch

    from vaekit.config import Config, DataConfig, ModelConfig, TrainConfig
    from vaekit.errors import VaekitError
    from vaekit.evaluate import evaluate_run
    from vaekit.train import fit

    config = Config(name="t", data=DataConfig(name="digits"), model=ModelConfig(latent_dim=4, hidden=(32,)),
                    train=TrainConfig(epochs=1, batch_size=64, device="cpu", threads=1))
    run = fit(config, tmp_path)[0]
    outer = torch.get_num_threads()
    torch.set_num_threads(2)  # a count the evaluation must give back (this process's own is restored after)
    try:
        one = evaluate_run(run, k=40, naive_k=40, write=False, overrides={"eval.threads": "1"})
        assert one["threads"] == 1 and torch.get_num_threads() == 2
        auto = evaluate_run(run, k=40, naive_k=40, write=False)
        assert auto["threads"] >= 1 and torch.get_num_threads() == 2
        assert one["log_likelihood_nats"] == pytest.approx(auto["log_likelihood_nats"], abs=1e-4)
        with pytest.raises(VaekitError, match="eval.threads"):
            evaluate_run(run, k=40, naive_k=40, write=False, overrides={"eval.threads": "-2"})
    finally:
        torch.set_num_threads(outer)
