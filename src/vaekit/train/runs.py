"""Training runs on disk: ``fit`` makes ``runs/<name>/`` and trains into it (or trains in memory),
``resume`` continues a run exactly where it stopped. Launched by torchrun, both join the processes'
group (:func:`vaekit.train.dist.join`): rank 0 loads the data first (a download happens once), creates
or tidies the run directory under its lock and writes; the others wait for it, then train beside it.

A run's config has one source of truth: the resolved config saved with each checkpoint's weights
(meta.json), which :func:`vaekit.load` reads too. ``config.toml`` is written once, for people; resume
reads it alone only for a run killed before its first checkpoint, and otherwise only to notice edits
(:func:`vaekit.checkpoint.run_config`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, overload

from vaekit import checkpoint as ckpt
from vaekit.config import Config, config_to_toml
from vaekit.data import DataBundle, load_data, load_run_data
from vaekit.errors import VaekitError
from vaekit.fileio import atomic_write_text
from vaekit.runlock import run_lock
from vaekit.train import dist
from vaekit.train.callbacks import Callback
from vaekit.train.loop import Trainer


def create_run_dir(config: Config, runs_root: str | Path = "runs") -> Path:
    """Make ``runs/<name>/``; an existing run is never overwritten."""
    name = config.name or time.strftime("run-%Y%m%d-%H%M%S")
    if "/" in name or name in (".", ".."):
        raise VaekitError(f"run name '{name}' (config.name, --name) must be a plain folder name; use e.g. "
                          "--name digits-vae")
    run_dir = Path(runs_root) / name
    if run_dir.exists():
        raise VaekitError(f"run directory {run_dir} already exists; choose another --name (config.name in "
                          f"Python), or continue it with --resume {run_dir} (vaekit.resume('{run_dir}'))")
    try:
        run_dir.mkdir(parents=True)
    except OSError as err:
        raise VaekitError(f"cannot create {run_dir}: {err.strerror}; choose a writable --runs folder (runs_root in "
                          "Python)") from None
    return run_dir


@overload
def fit(config: Config, runs_root: None, callbacks: list[Callback] | None = None, data: DataBundle | None = None,
        notify: Callable[[str, str], None] | None = None) -> tuple[None, Trainer]: ...
@overload
def fit(config: Config, runs_root: str | Path = "runs", callbacks: list[Callback] | None = None,
        data: DataBundle | None = None, notify: Callable[[str, str], None] | None = None) -> tuple[Path, Trainer]: ...
def fit(config: Config, runs_root: str | Path | None = "runs", callbacks: list[Callback] | None = None,
        data: DataBundle | None = None, notify: Callable[[str, str], None] | None = None
        ) -> tuple[Path | None, Trainer]:
    """Load the data, create ``runs/<name>/``, save the resolved config and train. Returns the run
    directory and the trainer (its ``model`` holds the last weights). ``runs_root=None`` trains in
    memory and writes nothing: the run directory returned is None, ``trainer.metrics`` holds the epochs'
    rows and ``trainer.best_state_dict()`` the best weights. ``notify(kind, message)`` receives the data
    loader's decisions (kind 'note') and warnings (kind 'warning'); the CLI prints them. The run's lock
    (:mod:`vaekit.runlock`) is held from its creation until training ends."""
    group = dist.join()
    config = config.replace(name=group.from_main(lambda: config.name or time.strftime("run-%Y%m%d-%H%M%S")))
    with group.together():  # rank 0 first: a download or a cache is written once
        if data is None and group.is_main:
            data = load_data(config.data, config.model.likelihood)
    data = data if data is not None else load_data(config.data, config.model.likelihood)
    config = _with_resolved_data(config, data)
    if runs_root is None:
        trainer = Trainer(config, None, data, callbacks)
        _notify(data, notify if group.is_main else None)
        trainer.fit()
        return None, trainer
    run_dir = Path(runs_root) / config.name
    with contextlib.ExitStack() as held:
        with group.together():
            if group.is_main:
                run_dir = create_run_dir(config, runs_root)
                held.enter_context(run_lock(run_dir))
        try:
            trainer = Trainer(config, run_dir, data, callbacks)  # checks the config against the data first
            if group.is_main:
                atomic_write_text(run_dir / "config.toml", config_to_toml(trainer.config))  # threads chosen
        except VaekitError:
            if group.is_main:
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing was trained: leave no half-made run behind
            raise
        _notify(data, notify if group.is_main else None)  # once the run is accepted: a refusal prints one line
        try:
            with dist.peer_failures(run_dir):
                trainer.fit()
        except VaekitError as err:
            if group.is_main and trainer.store.last_name() is None:  # failed before its first checkpoint
                shutil.rmtree(run_dir, ignore_errors=True)  # nothing of value: free the name for the next try
                raise VaekitError(f"{err} ({run_dir} held no checkpoint and was removed)") from None
            raise
    return run_dir, trainer


def _notify(data: DataBundle, notify: Callable[[str, str], None] | None) -> None:
    if notify is not None:
        for kind in ("note", "warning"):
            for message in data.info.get(f"{kind}s", []):
                notify(kind, message)


def resume(run_dir: str | Path, callbacks: list[Callback] | None = None, device: str | None = None,
           nproc: int | None = None, threads: int | None = None) -> Trainer:
    """Continue ``run_dir`` from its last checkpoint with the config saved in it, exactly where it stopped
    (mid-epoch when the checkpoint is). Leftovers of a killed writer are removed first: temporary
    files and checkpoints newer than ``last`` (written but never pointed to). A run killed before its
    first checkpoint (a config but no ``last`` pointer) starts again from step 0 with its config.toml.
    An edit of config.toml after training is applied when it only says how long, where or how often to
    checkpoint (e.g. more ``train.epochs``; noted in ``trainer.resume_note`` and the history), refused
    otherwise (:func:`vaekit.checkpoint.run_config`). ``device`` overrides ``train.device`` (e.g. 'cpu'
    to continue a GPU run on a machine without one) and ``nproc`` ``train.nproc`` (how many processes
    ``vaekit train`` launches; a resume at another number of processes is noted, see
    :mod:`vaekit.train.dist`), ``threads`` ``train.threads``; a ``best`` pointer left stale by a kill is
    rewritten from the checkpoint's own record. The run's lock (:mod:`vaekit.runlock`) is taken before any
    file is touched: a run another process is still writing is refused with one line naming that process."""
    run_dir = _run_dir(run_dir)
    group = dist.join()
    with contextlib.ExitStack() as held:
        with group.together():  # rank 0 locks and tidies the run before any process reads it
            if group.is_main:
                held.enter_context(run_lock(run_dir))
                _tidy(run_dir)
        with dist.peer_failures(run_dir):
            return _resume(run_dir, callbacks, {"device": device, "nproc": nproc, "threads": threads}, group)


def continued_config(run_dir: str | Path) -> Config:
    """The config :func:`resume` would continue ``run_dir`` with (before its overrides); reads only."""
    ckpts = _run_dir(run_dir) / "checkpoints"
    last = ckpt.read_pointer(ckpts, "last")
    return ckpt.run_config(run_dir, None if last is None else ckpt.read_meta(last))[0]


def _run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as a Path, when it is a run directory (else a one-line error)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.toml").is_file() and not (run_dir / "checkpoints" / "last").is_file():
        raise VaekitError(f"{run_dir} is not a run directory (no config.toml); pass a run such as runs/<name> "
                          "(--resume runs/<name>, vaekit.resume('runs/<name>'))")
    return run_dir


def _tidy(run_dir: Path) -> None:
    """Remove a killed writer's leftovers: temporary files and checkpoints newer than ``last``."""
    ckpts = run_dir / "checkpoints"
    ckpt.clean_temporaries(ckpts)
    last_name = ckpt.pointer_name(ckpts, "last")
    if last_name is not None and ckpt.read_pointer(ckpts, "last") is None:
        return  # a damaged run: _resume refuses it, with nothing removed
    for orphan in ckpts.glob("step-*"):  # never pointed to: a killed writer's, not a checkpoint of the run
        if orphan.is_dir() and (last_name is None or orphan.name > last_name):
            shutil.rmtree(orphan)


def _resume(run_dir: Path, callbacks: list[Callback] | None, launch_options: dict[str, Any],
            group: dist.Group) -> Trainer:
    """:func:`resume` once the run's lock is held and the run tidied."""
    ckpts = run_dir / "checkpoints"
    last_name = ckpt.pointer_name(ckpts, "last")
    last = None if last_name is None else ckpt.read_pointer(ckpts, "last")
    if last_name is not None and last is None:
        raise VaekitError(f"{ckpts / 'last'} names {last_name}, which is missing or incomplete; the run is "
                          "damaged: train it again under a new name (--name, config.name in Python)")
    meta = None if last is None else ckpt.read_meta(last)
    config, edited = ckpt.run_config(run_dir, meta)
    launch = {k: v for k, v in launch_options.items() if v is not None}
    if launch:  # where and on how many processes to continue: not part of what is trained
        config = config.replace(train=dataclasses.replace(config.train, **launch))
    if meta is None:  # nothing recorded yet: decide the preprocessing again from the saved (resolved) config
        data = load_data(config.data, config.model.likelihood)
    else:
        if meta.get("upgraded_from") == 1 and config.model.likelihood != "bernoulli":
            raise VaekitError(f"{run_dir} is a format-{meta['upgraded_from']} Gaussian run, whose data scaling this "
                              "vaekit defines differently; evaluate it as it is, or train it again")
        data = load_run_data(config, meta)[1]
    trainer = Trainer(config, run_dir, data, callbacks)
    if last is None:
        trainer.resume_note = f"{run_dir} had no checkpoint: started again from step 0 with its saved config"
        trainer.state.history.append(trainer.resume_note)
        trainer.metrics = trainer.store.truncate_metrics(0)
        trainer.resumed_at_step = 0
    else:
        trainer.restore(last)
        trainer.resumed_at_step = trainer.state.step
        if "threads" in launch:  # a count given now replaces the run's own way of choosing it
            trainer.state.threads_auto = launch["threads"] < 0
        best = trainer.state.best_checkpoint
        if group.is_main and best is not None and ckpt.pointer_name(ckpts, "best") != best \
                and (ckpts / best).is_dir():
            atomic_write_text(ckpts / "best", best)  # torn by a kill between the `last` and `best` writes
    if edited is not None:
        trainer.state.history.append(edited)
        trainer.resume_note = "\n".join(n for n in (edited, trainer.resume_note) if n)
    trainer.fit()
    return trainer


def _with_resolved_data(config: Config, data: DataBundle) -> Config:
    """Record what the data loader decided (likelihood, scale, binarisation, dequantisation, absolute
    paths) so the saved config reproduces the run exactly."""
    from vaekit.data.rundata import resolved_data_config

    lik = data.info.get("likelihood") or config.model.likelihood
    if config.model.likelihood not in ("auto", lik):
        raise VaekitError(f"the data were prepared for model.likelihood {lik} but the config says "
                          f"{config.model.likelihood}; load them with the same likelihood")
    table = (data.info.get("prep") or {}).get("table")  # a mixed-type table: its column layout (vaekit.tabular)
    columns = tuple(c["type"] + (f":{len(c['categories'])}" if c["type"] == "categorical" else "")
                    for c in table["columns"]) if table else config.model.columns
    return config.replace(data=resolved_data_config(config.data, data.info),
                          model=dataclasses.replace(config.model, likelihood=lik, columns=columns))
