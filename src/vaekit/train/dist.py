"""Training on several processes: torch.distributed (DistributedDataParallel), launched by torchrun.

One run, ``W`` processes (ranks). Every rank holds the whole model and draws the same epoch permutation
(the shuffle stream has the same seed everywhere); each global batch of ``train.batch_size`` rows is cut
into ``W`` contiguous shards (:func:`shard_rows`) and rank ``r`` computes the loss of shard ``r`` through
the DDP-wrapped :class:`~vaekit.objectives.Objective`, whose backward all-reduces (averages) the
gradients. Each rank's loss is weighted by ``W * n_r / n`` so that the averaged gradient is exactly the
gradient of the mean over the global batch, also for a short last batch. The non-finite flag of a step
is all-reduced (MAX), so every rank skips the same steps; epoch sums and validation sums are reduced
(SUM) when the host reads them; the selection score and a requested stop are rank 0's / any rank's.
Rank 0 alone writes checkpoints, metrics and reports; a checkpoint holds every rank's RNG streams (rank
0's under the usual names, rank ``r``'s under ``rank<r>.``), so a resume at the same world size
continues exactly, and a resume at another one continues with a note of what is not reproduced.

The trainer talks to a :class:`Group`: :class:`SingleProcess` (one process; every method returns its
input, nothing is synchronised) or :class:`ProcessGroup` (torch.distributed is initialised: by
:func:`join` from torchrun's environment, or by the caller). ``gloo`` serves CPU tensors, ``nccl`` CUDA
ones; a rank waits at most ``VAEKIT_DIST_TIMEOUT`` seconds (default 300) for the others.
"""

from __future__ import annotations

import inspect
import os
import re
import signal
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar, final

import torch
import torch.distributed as tdist
from torch import Tensor, nn

from vaekit.data import Split
from vaekit.data.sparse import SparseSplit
from vaekit.devices import gpu_per_process
from vaekit.errors import VaekitError
from vaekit.model import VAE
from vaekit.scoring import evaluate_split, split_totals, totals_dict
from vaekit.train.rng import RANK_SEED_STRIDE

#: Seconds a rank waits for the others at a collective before it gives up (an error, never a hang).
TIMEOUT_ENV = "VAEKIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
#: Test hook: ``RANK:STEPS`` makes rank RANK kill itself (SIGKILL) at its STEPS-th training step.
KILL_ENV = "VAEKIT_TEST_KILL_RANK"

T = TypeVar("T")


def launched() -> bool:
    """Whether this process was started by torchrun (or another launcher setting RANK and WORLD_SIZE)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def shard_rows(idx: Tensor, rank: int, world_size: int) -> tuple[Tensor, float]:
    """Rank ``rank``'s contiguous share of the global batch ``idx`` (n,) and its loss weight
    ``world_size * n_rank / n``: DDP averages the ranks' gradients, so weighted means give exactly the
    gradient of the mean over all n rows. Shares differ by at most one row."""
    rows = torch.tensor_split(idx, world_size)[rank]
    return rows, world_size * len(rows) / len(idx)


def check_batches(n_train: int, batch_size: int, world_size: int) -> None:
    """Every global batch must give every rank at least one row (a rank with none would compute no loss)."""
    if world_size == 1:
        return
    last = n_train % batch_size or batch_size
    if min(batch_size, last) < world_size:
        raise VaekitError(f"train.batch_size {batch_size} on {n_train} training examples leaves a batch of "
                          f"{min(batch_size, last)} rows, fewer than the {world_size} processes; choose a batch "
                          f"size of at least {world_size} whose last batch ({n_train} mod batch size) is 0 or "
                          f"at least {world_size}")


def world_note(step: int, saved: int, now: int) -> str | None:
    """The history note of a resume at another world size (None when it is the same)."""
    if saved == now:
        return None
    fresh = f"ranks {saved}..{now - 1} drew fresh noise streams seeded from the step" if now > saved else \
        f"the noise streams of ranks {now}..{saved - 1} were dropped"
    return (f"resumed at step {step} on {now} process(es) from a checkpoint written by {saved}: the data order "
            f"and the global batch continue exactly, but {fresh} and the gradients are summed in another "
            f"order: the continuation is not bit-identical to an uninterrupted {saved}-process run")


def rank_rng_tensors(tensors: dict[str, Tensor], rank: int, saved: int,
                     fresh: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
    """This rank's RNG states (``rng.*`` keys) from a checkpoint's trainer ``tensors`` written by
    ``saved`` processes: rank 0's keys as they are, rank r's under ``rank<r>.``; a rank the checkpoint
    has no streams for takes ``fresh()`` ones with rank 0's shuffle (the order all ranks share)."""
    if rank == 0:
        return tensors
    if rank >= saved:
        return {**fresh(), "rng.shuffle": tensors["rng.shuffle"]}
    prefix = f"rank{rank}."
    own = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if not own:
        raise KeyError(f"missing tensors {prefix}rng.* (the checkpoint says {saved} processes wrote it)")
    return own


class Group(ABC):
    """The processes that train one run together: ``rank`` of ``world_size`` (rank 0 writes)."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @abstractmethod
    def device(self, device: torch.device) -> torch.device:
        """The device this rank computes on when the run asks for ``device`` (a GPU per rank)."""

    @abstractmethod
    def wrap(self, objective: nn.Module) -> nn.Module:
        """``objective`` as the step calls it: its forward all-reduces the gradients of the backward."""

    @abstractmethod
    def shard(self, idx: Tensor) -> tuple[Tensor, float]:
        """This rank's rows of the global batch ``idx`` and its loss weight (:func:`shard_rows`)."""

    @abstractmethod
    def agree_bad(self, bad: Tensor) -> Tensor:
        """A step's non-finite flag (0-d float32 on the device, 1.0 for non-finite), 1.0 on every rank if 1.0
        on one (the flag may be reduced in place)."""

    @abstractmethod
    def reduce_sums(self, sums: Tensor) -> Tensor:
        """An epoch's sums (float64 (4,): loss, recon, kl, skipped) over all ranks: the first three added
        up, the skipped count (the same everywhere) as it is."""

    @abstractmethod
    def evaluate(self, model: VAE, split: Split | SparseSplit, batch_size: int, seed: int) -> dict[str, float]:
        """:func:`vaekit.scoring.evaluate_split` of the whole ``split``, each rank scoring its share."""

    @abstractmethod
    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` run on rank 0 alone, its value given to every rank."""

    @abstractmethod
    def agree_stop(self, reason: str | None) -> str | None:
        """A requested stop: the first rank's reason that is not None, on every rank."""

    @abstractmethod
    def all_rng(self, own: dict[str, Tensor]) -> dict[str, Tensor]:
        """Every rank's RNG states for a checkpoint: rank 0's ``own`` keys as they are, rank r's under
        ``rank<r>.``."""

    @abstractmethod
    @contextmanager
    def together(self) -> Iterator[None]:
        """Run a block (typically rank 0's alone) that may fail with a VaekitError: then every rank raises
        it, instead of the others waiting for a rank that has stopped."""
        yield


@final
class SingleProcess(Group):
    """One process: everything is local and nothing is synchronised."""

    rank, world_size = 0, 1

    def device(self, device: torch.device) -> torch.device:
        return device

    def wrap(self, objective: nn.Module) -> nn.Module:
        return objective

    def shard(self, idx: Tensor) -> tuple[Tensor, float]:
        return idx, 1.0

    def agree_bad(self, bad: Tensor) -> Tensor:
        return bad

    def reduce_sums(self, sums: Tensor) -> Tensor:
        return sums

    def evaluate(self, model: VAE, split: Split | SparseSplit, batch_size: int, seed: int) -> dict[str, float]:
        return evaluate_split(model, split, batch_size, seed)

    def from_main(self, compute: Callable[[], T]) -> T:
        return compute()

    def agree_stop(self, reason: str | None) -> str | None:
        return reason

    def all_rng(self, own: dict[str, Tensor]) -> dict[str, Tensor]:
        return own

    @contextmanager
    def together(self) -> Iterator[None]:
        yield


@final
class ProcessGroup(Group):
    """The ranks of an initialised torch.distributed default group (gloo for CPU tensors, nccl for CUDA)."""

    def __init__(self) -> None:
        self.rank, self.world_size = tdist.get_rank(), tdist.get_world_size()
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self._steps = 0
        rank, _, steps = os.environ.get(KILL_ENV, "").partition(":")
        self._kill_at = int(steps) if rank.strip() == str(self.rank) and steps else 0

    def device(self, device: torch.device) -> torch.device:
        return torch.device("cuda", self.local_rank) if device.type == "cuda" else device

    def wrap(self, objective: nn.Module) -> nn.Module:
        device = next(objective.parameters()).device
        ids = [device.index] if device.type == "cuda" else None
        # the model's buffers are constants (data scaling, index tables): no broadcast before every forward
        # (torch >= 2.13 names it forward_sync_buffers and deprecates broadcast_buffers; older torch has only that)
        ddp = nn.parallel.DistributedDataParallel
        name = "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters \
            else "broadcast_buffers"
        no_sync: dict[str, Any] = {name: False}
        return ddp(objective, device_ids=ids, **no_sync)

    def shard(self, idx: Tensor) -> tuple[Tensor, float]:
        return shard_rows(idx, self.rank, self.world_size)

    def agree_bad(self, bad: Tensor) -> Tensor:
        self._steps += 1
        if self._steps == self._kill_at:  # the test hook of a rank dying mid-run
            os.kill(os.getpid(), signal.SIGKILL)
        tdist.all_reduce(bad, op=tdist.ReduceOp.MAX)
        return bad

    def reduce_sums(self, sums: Tensor) -> Tensor:
        head = sums[:3].clone()
        tdist.all_reduce(head)
        return torch.cat([head, sums[3:]])

    def evaluate(self, model: VAE, split: Split | SparseSplit, batch_size: int, seed: int) -> dict[str, float]:
        n = len(split)
        if n == 0:
            return evaluate_split(model, split, batch_size, seed)  # its one-line error
        rows = torch.tensor_split(torch.arange(n), self.world_size)[self.rank]
        totals = split_totals(model, split, batch_size, seed + self.rank * RANK_SEED_STRIDE, rows=rows)
        tdist.all_reduce(totals)
        return totals_dict(model, totals / n)

    def from_main(self, compute: Callable[[], T]) -> T:
        box: list[Any] = [compute() if self.is_main else None]
        tdist.broadcast_object_list(box, src=0)
        return box[0]

    def agree_stop(self, reason: str | None) -> str | None:
        reasons: list[str | None] = [None] * self.world_size
        tdist.all_gather_object(reasons, reason)
        return next((r for r in reasons if r is not None), None)

    def all_rng(self, own: dict[str, Tensor]) -> dict[str, Tensor]:
        every: list[dict[str, Tensor]] = [{} for _ in range(self.world_size)]
        tdist.all_gather_object(every, {k: v.cpu() for k, v in own.items()})
        out = dict(every[0])
        for r, states in enumerate(every[1:], start=1):
            out.update({f"rank{r}.{k}": v for k, v in states.items()})
        return out

    @contextmanager
    def together(self) -> Iterator[None]:
        failed: str | None = None
        try:
            yield
        except Exception as err:
            failed = str(err) or type(err).__name__
            raise
        finally:
            errors: list[str | None] = [None] * self.world_size
            tdist.all_gather_object(errors, failed)
        other = next((f"rank {r}: {e}" for r, e in enumerate(errors) if e is not None), None)
        if other is not None:
            raise VaekitError(f"another training process stopped ({other})")


def current() -> Group:
    """The group of this process: a :class:`ProcessGroup` when torch.distributed is initialised with more
    than one rank, else :class:`SingleProcess`."""
    if tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1:
        return ProcessGroup()
    return SingleProcess()


def join() -> Group:
    """Initialise torch.distributed from torchrun's environment (``env://``: RANK, WORLD_SIZE,
    MASTER_ADDR, MASTER_PORT) unless it is initialised already or this process was not launched so;
    returns :func:`current`. CPU tensors go through gloo, CUDA tensors through nccl (each rank on GPU
    LOCAL_RANK); collectives time out after ``VAEKIT_DIST_TIMEOUT`` seconds."""
    if launched() and int(os.environ["WORLD_SIZE"]) > 1 and not tdist.is_initialized():
        try:
            seconds = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
        except ValueError:
            raise VaekitError(f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r} is not a number of seconds; set e.g. "
                              f"{TIMEOUT_ENV}=300") from None
        backend = "gloo"
        if gpu_per_process():  # fewer GPUs than processes: the run computes on the CPU (pick_device)
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
            backend = "cpu:gloo,cuda:nccl"
        tdist.init_process_group(backend, init_method="env://", timeout=timedelta(seconds=seconds))
    return current()


def leave(synchronise: bool = False) -> None:
    """Shut torch.distributed down when it is initialised (at the end of a command). ``synchronise`` (a run
    that ended well on every rank): wait at a barrier first, so no rank tears its connections down while a peer
    still uses them (gloo aborts a process whose worker threads outlive the group: "terminate called without
    an active exception"); after a failure a peer may be gone, so there is no barrier."""
    if tdist.is_available() and tdist.is_initialized():
        if synchronise:
            tdist.barrier()
        tdist.destroy_process_group()


@contextmanager
def peer_failures(run: Path | str) -> Iterator[None]:
    """Turn a collective that failed because another rank died or hung (torch.distributed's errors)
    into one line that says how to continue ``run``."""
    try:
        yield
    except RuntimeError as err:  # gloo reports a lost peer as a plain RuntimeError, nccl and c10d as DistError
        text = str(err).strip()
        if not (isinstance(err, tdist.DistError) or "gloo" in text.lower() or "nccl" in text.lower()):
            raise
        # "[.../gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:41234: Connection reset by peer. This is ..."
        first = re.sub(r"^\[[^\]]*\]\s*", "", text.splitlines()[0] if text else type(err).__name__).split(". ")[0]
        raise VaekitError(f"another training process stopped or stopped answering ({first[:200]}); the last "
                          f"checkpoint is intact: continue with `vaekit train --resume {run}`") from None


def launch(nproc: int, argv: list[str], run: Path | str) -> None:
    """Run ``vaekit ARGV`` as ``nproc`` processes on this machine through torch.distributed.run
    (torchrun --standalone). A failed process stops the others (torchrun does) and is one VaekitError
    naming it and how to continue ``run``."""
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    args = torchrun.parse_args(["--standalone", f"--nproc_per_node={nproc}", "-m", "vaekit", *argv])
    try:
        torchrun.run(args)
    except ChildFailedError as err:
        def cause(item: tuple[int, Any]) -> tuple[int, int, int]:
            """Killed by a signal first, then failed, then stopped by torchrun (SIGTERM) after another."""
            rank, f = item
            return (0 if f.exitcode < 0 and f.exitcode != -signal.SIGTERM else 1 if f.exitcode > 0 else 2,
                    f.timestamp, rank)

        rank, failure = min(err.failures.items(), key=cause)
        if failure.exitcode < 0:
            how = f"was killed by {failure.signal_name()}"
        elif failure.exitcode == 2:  # vaekit's exit status for an error it printed
            how = "stopped with the error above"
        else:
            how = f"exited with code {failure.exitcode}"
        then = (f"the last checkpoint is intact: continue with `vaekit train --resume {run}`"
                if (Path(run) / "checkpoints" / "last").is_file() else "no checkpoint was written")
        raise VaekitError(f"training process {rank} of {nproc} (pid {failure.pid}) {how}, so the run stopped; "
                          f"{then}") from None
