"""The trainer's random streams, none of them the caller's.

Four streams: torch's global CPU generator (parameter initialisation, the reparameterisation noise of
the objective), the CUDA device's default generator (the same on a GPU), the shuffle order (CPU) and the
dynamic binarisation (on the data's device). The model samples from the global generators, so the trainer
keeps its own copies of their states and puts them in place only while it works (:meth:`RngStreams.active`,
re-entrant): whatever the caller's global RNG held before a :class:`~vaekit.train.Trainer` was built or
ran, it holds afterwards. Checkpoints save all four (``rng.torch``, ``rng.cuda``, ``rng.shuffle``,
``rng.binarize``); a checkpoint written on another device type restores those that fit and re-seeds the
others from the step (noted in the run's history: not bit-identical to an uninterrupted run).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import torch
from torch import Tensor

KEYS = ("rng.torch", "rng.shuffle", "rng.binarize")
#: Rank r of a distributed run seeds its noise streams ``seed + r * RANK_SEED_STRIDE`` (and validation noise
#: likewise): far apart from each other and from the run's other seed offsets.
RANK_SEED_STRIDE = 2_000_003
P = ParamSpec("P")
R = TypeVar("R")


class RngStreams:
    """The streams of one trainer on ``device``, seeded from ``seed`` as a fresh run seeds them: the
    global streams with ``seed`` (``torch.manual_seed``), the shuffle with ``seed``, the binarisation
    with ``seed + 1`` on ``data_device``. Process ``rank`` of a distributed run (:mod:`vaekit.train.dist`)
    shares the shuffle (every rank draws the same epoch order) and offsets the others by
    ``rank * RANK_SEED_STRIDE``: its own noise and binarisation; rank 0's streams are a single process's."""

    def __init__(self, seed: int, device: torch.device, data_device: torch.device, rank: int = 0) -> None:
        self.device = device
        self.shuffle = torch.Generator().manual_seed(seed)
        self.binarize = torch.Generator(device=data_device).manual_seed(seed + 1 + rank * RANK_SEED_STRIDE)
        self._depth = 0
        with self._fork():
            torch.manual_seed(seed + rank * RANK_SEED_STRIDE)
            self._cpu, self._cuda = self._read_global()

    @contextmanager
    def _fork(self) -> Iterator[None]:
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            yield

    def _read_global(self) -> tuple[Tensor, Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    @contextmanager
    def active(self) -> Iterator[None]:
        """Run the block with the trainer's streams as torch's global ones; the caller's come back after.
        Nested blocks share the outermost one's streams."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        with self._fork():
            torch.set_rng_state(self._cpu)
            if self._cuda is not None:
                torch.cuda.set_rng_state(self._cuda, self.device)
            self._depth = 1
            try:
                yield
            finally:
                self._depth = 0
                self._cpu, self._cuda = self._read_global()

    def global_states(self) -> tuple[Tensor, Tensor | None]:
        """The current (CPU, CUDA) states of the trainer's global streams."""
        return self._read_global() if self._depth else (self._cpu, self._cuda)

    def set_global_states(self, cpu: Tensor, cuda: Tensor | None) -> None:
        """Put (CPU, CUDA) states into the trainer's global streams (CUDA: None leaves it as it is)."""
        if self._depth:
            torch.set_rng_state(cpu)
            if cuda is not None:
                torch.cuda.set_rng_state(cuda, self.device)
            return
        self._cpu = cpu.clone()
        if cuda is not None:
            self._cuda = cuda.clone()

    def reseed_cuda(self, seed: int) -> None:
        """Re-seed the trainer's CUDA stream (a checkpoint from a CPU run has none to restore)."""
        with self._fork(), torch.cuda.device(self.device):
            torch.cuda.manual_seed(seed)
            state = torch.cuda.get_rng_state(self.device)
        self.set_global_states(self.global_states()[0], state)

    def state_tensors(self, shuffle_state: Tensor | None = None) -> dict[str, Tensor]:
        """Every stream's state as trainer tensors; ``shuffle_state`` replaces the shuffle stream's (a
        mid-epoch checkpoint saves it as it was at the epoch's start, so a resume redraws the same order)."""
        cpu, cuda = self.global_states()
        out = {"rng.torch": cpu.clone(),
               "rng.shuffle": self.shuffle.get_state() if shuffle_state is None else shuffle_state,
               "rng.binarize": self.binarize.get_state()}
        if cuda is not None:
            out["rng.cuda"] = cuda.clone()
        return out

    def plan(self, tensors: dict[str, Tensor], step: int) -> tuple[dict[str, Tensor], list[str], str | None]:
        """The saved states in ``tensors`` that fit these streams, the streams to re-seed instead and, for
        a checkpoint written on another device type, the history note. Changes nothing; a state that
        should fit but does not raises ``ValueError`` (the checkpoint is damaged)."""
        def fits(key: str, current: Tensor) -> bool:
            saved = tensors[key]
            return saved.dtype == current.dtype and saved.shape == current.shape

        def wrong(key: str, current: Tensor) -> ValueError:
            return ValueError(f"{key} holds {tuple(tensors[key].shape)} {tensors[key].dtype}, expected "
                              f"{tuple(current.shape)} {current.dtype}")

        here, written_on = self.device.type, "cuda" if "rng.cuda" in tensors else "cpu"
        cpu, cuda = self.global_states()
        states: dict[str, Tensor] = {}
        for key, current in (("rng.torch", cpu), ("rng.shuffle", self.shuffle.get_state())):
            if not fits(key, current):  # CPU generators on every device: a mismatch is damage
                raise wrong(key, current)
            states[key] = tensors[key]
        reseed: list[str] = []
        current = self.binarize.get_state()
        if fits("rng.binarize", current):
            states["rng.binarize"] = tensors["rng.binarize"]
        elif written_on != here:  # the binarisation generator lives on the data's device
            reseed.append("the binarisation stream")
        else:
            raise wrong("rng.binarize", current)
        if cuda is not None:
            if written_on == "cuda" and not fits("rng.cuda", cuda):
                raise wrong("rng.cuda", cuda)
            if written_on == "cuda":
                states["rng.cuda"] = tensors["rng.cuda"]
            else:
                reseed.append("the CUDA stream")
        if written_on == here:
            return states, reseed, None
        what = f"{' and '.join(reseed)} re-seeded from the step" if reseed else "every RNG state restored"
        return states, reseed, (f"resumed at step {step} on {here} from a checkpoint written on {written_on} "
                                f"({what}): the continuation is not bit-identical to an uninterrupted run")

    def load(self, states: dict[str, Tensor], reseed: list[str], seed: int) -> None:
        """Apply a :meth:`plan`: restore its states, re-seed the rest from ``seed`` (the run's seed plus
        the step)."""
        self.set_global_states(states["rng.torch"], states.get("rng.cuda"))
        self.shuffle.set_state(states["rng.shuffle"])
        if "rng.binarize" in states:
            self.binarize.set_state(states["rng.binarize"])
        else:
            self.binarize.manual_seed(seed + 1)
        if "the CUDA stream" in reseed:
            self.reseed_cuda(seed)


class _HasStreams(Protocol):
    rng: RngStreams


S = TypeVar("S", bound=_HasStreams)


def own_rng(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run ``method`` with its object's streams (``self.rng``) as torch's global ones."""
    @functools.wraps(method)
    def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        if self.rng._depth:  # already inside (a step called by the epoch): the streams are in place
            return method(self, *args, **kwargs)
        with self.rng.active():
            return method(self, *args, **kwargs)
    return wrapper
