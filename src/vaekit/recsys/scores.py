"""A trained model's item scores for users given by their fold-in items, and the validation NDCG@100
that picks a recommender run's best checkpoint.

:func:`recommendation_scores` is the one way a model ranks items: encode the fold-in rows, take the
posterior mean (the code itself for an autoencoder), decode, and read the decoder's logits (for a
multinomial, log softmax differs from them by a per-user constant, so the ranking is the same). Training's
selection (:class:`NdcgSelection`), ``vaekit eval`` and ``vaekit recommend`` call it; the fold-in items
are excluded from the ranking by :func:`vaekit.recsys.metrics.rank_metrics`, not here.
"""

from __future__ import annotations

from typing import Any, final

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.distributions import Distribution, Independent

from vaekit.inputs import trusted
from vaekit.recsys.metrics import rank_metrics
from vaekit.scoring import Selection


def _dense(rows: sp.spmatrix | np.ndarray) -> torch.Tensor:
    """Fold-in rows (b, I), CSR or dense, as float32 (b, I) (one batch: b x I floats)."""
    if isinstance(rows, np.ndarray):
        return torch.as_tensor(np.asarray(rows, dtype=np.float32))
    return torch.from_numpy(np.asarray(rows.toarray(), dtype=np.float32))


def decoder_logits(p_x: Distribution) -> torch.Tensor:
    """The decoder's item scores of p(x|z): its logits (multinomial, Bernoulli), else its mean."""
    for d in (p_x, p_x.base_dist if isinstance(p_x, Independent) else None):
        logits = getattr(d, "logits", None)
        if isinstance(logits, torch.Tensor):
            return logits
    return p_x.mean


@torch.no_grad()
def recommendation_scores(model: Any, fold_in: sp.spmatrix | np.ndarray) -> np.ndarray:
    """Item scores (b, I) float32 for the b users whose fold-in interactions are the rows of ``fold_in``
    (CSR or dense (b, I), the model's items as columns): the decoder's logits at the posterior mean of
    each row, computed in eval mode (no input dropout) on the model's device. Higher = recommended first;
    fold-in items are not excluded here."""
    x = _dense(fold_in)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        x = x.to(device)
        with trusted(model):
            z = model.encode(x).mean
            scores = decoder_logits(model.decode(z))
    finally:
        model.train(was_training)
    return scores.reshape(len(x), -1).float().cpu().numpy()


@final
class NdcgSelection(Selection):
    """Mean validation NDCG@``k`` of the model's :func:`recommendation_scores` (fold-in items excluded):
    the recommender's selection, recorded per epoch as ``val_ndcg@<k>``."""

    def __init__(self, fold_in: sp.csr_matrix, heldout: sp.csr_matrix, k: int = 100, batch_size: int = 500) -> None:
        self.fold_in, self.heldout, self.k, self.batch_size = fold_in, heldout, int(k), int(batch_size)
        self.name = f"val_ndcg@{self.k}"

    def score(self, model: nn.Module) -> float:
        key = f"ndcg@{self.k}"
        per_user = rank_metrics(lambda rows: recommendation_scores(model, rows), self.fold_in, self.heldout,
                                ks={key: self.k}, batch_size=self.batch_size)[key]
        return float(np.mean(per_user))
