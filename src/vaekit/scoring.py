"""Mean per-example ELBO of a split: the validation score of training and the ELBO of ``vaekit eval``;
and :class:`Selection`, the interface of another validation score that picks a run's best checkpoint
(:mod:`vaekit.train.selection`; e.g. the recommender's NDCG@100, :mod:`vaekit.recsys.scores`).

Below both the trainer and the evaluation (it imports neither), so evaluation never imports the trainer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import nn

from vaekit.bounds import elbo_terms
from vaekit.data import Split
from vaekit.data.sparse import SparseSplit
from vaekit.errors import VaekitError
from vaekit.inputs import trusted
from vaekit.model import VAE
from vaekit.threads import poll_load


@torch.no_grad()
def evaluate_split(model: VAE, split: Split | SparseSplit, batch_size: int, seed: int,
                   n_samples: int = 1) -> dict[str, float]:
    """Mean per-example ELBO, reconstruction and KL (nats) over a split, with fixed noise ``seed`` and
    ``n_samples`` Monte-Carlo samples per point for the reconstruction term. An empty split has no mean:
    that is an error, never an ELBO of 0. The global RNG is left as it was (the draws come from a fork)."""
    n = len(split)
    if n == 0:
        raise VaekitError("cannot evaluate a split with no examples; give the data a validation or test split "
                          "(data.val_fraction / data.test_fraction, e.g. --data.val_fraction 0.1)")
    return totals_dict(model, split_totals(model, split, batch_size, seed, n_samples) / n)


def totals_dict(model: VAE, means: torch.Tensor) -> dict[str, float]:
    """{elbo, recon, kl} (and ``kl_z1``, ``kl_z2``: the KL per level of a hierarchical model) from the
    per-example means of :func:`split_totals`' sums."""
    names = ["elbo", "recon", "kl", *(f"kl_{level}" for level in getattr(model, "level_names", ()))]
    return dict(zip(names, means.tolist(), strict=True))


@torch.no_grad()
def split_totals(model: VAE, split: Split | SparseSplit, batch_size: int, seed: int, n_samples: int = 1,
                 rows: torch.Tensor | None = None) -> torch.Tensor:
    """The summed ELBO, reconstruction and KL (nats; float64 (3,), or (3 + L,) with the KL of each of the L
    levels of a hierarchical model, on the model's device) over ``rows``
    of ``split`` (default: all, in order), ``batch_size`` at a time with fixed noise ``seed``: what
    :func:`evaluate_split` averages, and what each process of a distributed run adds up for its share."""
    device = next(model.parameters()).device
    rows = torch.arange(len(split)) if rows is None else rows
    totals = torch.zeros(3 + len(getattr(model, "level_names", ())), dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), trusted(model):
        torch.manual_seed(seed)
        for start in range(0, len(rows), batch_size):
            poll_load()  # within vaekit.threads.following_load: the thread count follows the load
            batch = split.batch_of(rows[start:start + batch_size]).to(device)
            out = elbo_terms(model, batch, n_samples=n_samples)
            sums = [out.elbo.sum(), out.recon.sum(), out.kl.sum()]
            if out.kl_levels is not None:
                sums += list(out.kl_levels.sum(0).unbind())
            totals += torch.stack(sums).double()
    model.train(was_training)
    return totals


class Selection(ABC):
    """A validation score to maximise: ``name`` is its key in the metrics rows (e.g. ``val_ndcg@100``),
    ``score(model)`` its value for the model as it stands, higher is better. The trainer calls it in eval
    mode under ``torch.no_grad`` and restores the model's mode; a score draws no random numbers."""

    name: str

    @abstractmethod
    def score(self, model: nn.Module) -> float: ...
