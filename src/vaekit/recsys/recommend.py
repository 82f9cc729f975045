"""A trained recommender run, for use: top items for a user given by the items they interacted with.

Python::

    model = vaekit.recommender("runs/ml100k")        # the run's best checkpoint, items and titles
    model.recommend([50, 181, 258], k=10)            # item ids as in the data file -> Recommendation rows

CLI: ``vaekit recommend RUN --user-items items.txt --top 10`` (one item id per line, or separated by commas
or spaces) or ``--user ID`` (a user of the run's data: every item the run's split holds for them).
Scores are the decoder's log-probabilities log softmax(logits) of each item at the posterior mean of the
user's row (:func:`vaekit.recsys.scores.recommendation_scores`, the function evaluation ranks with); items
the user already has are never recommended.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

import numpy as np
import torch
from scipy import sparse

from vaekit.errors import VaekitError, VaekitWarning
from vaekit.recsys.bundle import RecSplits
from vaekit.recsys.metrics import top_k
from vaekit.recsys.scores import recommendation_scores


@final
@dataclass(frozen=True)
class Recommendation:
    """One recommended item: its id (as in the data file), title ('' when the data have none), the model's
    log-probability of it (nats; log softmax of the decoder's logits) and its rank (1 = first)."""

    rank: int
    item: Any
    title: str
    log_prob: float


def parse_item_ids(text: str) -> list[str]:
    """Item ids from text: one per line, or separated by commas, tabs or spaces; ``#`` starts a comment."""
    ids: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0]
        ids += [tok for tok in re.split(r"[,\s]+", line) if tok]
    return ids


@final
class RunRecommender:
    """A recommender run's model with its item vocabulary and titles (see the module doc).

    ``model``: the trained VAE (or autoencoder) over the run's ``items``; ``rec``: the run's split and
    titles (:class:`~vaekit.recsys.bundle.RecSplits`)."""

    def __init__(self, model: Any, rec: RecSplits) -> None:
        self.model, self.rec = model.eval(), rec
        self.items: np.ndarray = rec.items
        self._column = {item: j for j, item in enumerate(self.items.tolist())}

    @classmethod
    def load(cls, run: str | Path, device: str = "cpu") -> RunRecommender:
        """The run's best checkpoint with the items and titles of its data (rebuilt exactly, see
        :func:`vaekit.data.load_run_data`). A run not trained on interaction data is an error."""
        from vaekit.runload import load_run

        model, _config, _meta, data = load_run(run, device)
        if data.rec is None:
            raise VaekitError(f"{run} was not trained on interaction data, so it has no items to recommend; train "
                              "one with --data.name movielens-100k or --data.format interactions --data.path FILE")
        return cls(model, data.rec)

    # ---------------------------------------------------------------------------------- items
    def _key(self, token: Any) -> Any:
        """A user's item id as the vocabulary spells it (int ids for integer vocabularies)."""
        if np.issubdtype(self.items.dtype, np.integer):
            try:
                return int(str(token).strip())
            except ValueError:
                raise VaekitError(f"item id '{token}' is not an integer, but this run's items are integer ids "
                                  f"(e.g. {self.items[0]}); give the ids of the data file") from None
        return str(token).strip()

    def row(self, items: Iterable[Any]) -> sparse.csr_matrix:
        """A user's items as a (1, I) CSR row of 1.0s. Ids the model does not know (not in the training users'
        items) are left out with one warning naming them; none known is an error."""
        keys = [self._key(t) for t in items]
        cols = sorted({self._column[k] for k in keys if k in self._column})
        unknown = [k for k in dict.fromkeys(keys) if k not in self._column]
        if not keys:
            raise VaekitError("no items given; give the ids of items the user interacted with (one per line)")
        if not cols:
            raise VaekitError(f"none of the {len(set(keys))} items given is known to this model (first: "
                              f"{unknown[0]}); give ids of items in the run's training data")
        if unknown:
            shown = ", ".join(str(u) for u in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            warnings.warn(f"{len(unknown)} of the items given are not in the model's {len(self.items)} items and "
                          f"were left out: {shown}", VaekitWarning, stacklevel=2)
        data = np.ones(len(cols), dtype=np.float32)
        return sparse.csr_matrix((data, (np.zeros(len(cols), dtype=np.int64), cols)), shape=(1, len(self.items)))

    def user_row(self, user: Any) -> sparse.csr_matrix:
        """Every item the run's split holds for ``user`` (an id of the data file): the training row of a
        training user, fold-in + to-predict of a held-out one."""
        rec = self.rec
        for users, matrices in ((rec.train_users, (rec.train,)), (rec.val_users, (rec.val_in, rec.val_out)),
                                (rec.test_users, (rec.test_in, rec.test_out))):
            key: Any = user
            if np.issubdtype(users.dtype, np.integer):
                try:
                    key = int(str(user))
                except ValueError:
                    continue
            else:
                key = str(user)
            i = int(np.searchsorted(users, key)) if len(users) else 0
            if i < len(users) and users[i] == key:
                out = matrices[0][i]
                for m in matrices[1:]:
                    out = out + m[i]
                return sparse.csr_matrix(out, dtype=np.float32)
        raise VaekitError(f"user '{user}' is not in this run's data (users kept after data.min_rating and "
                          "data.min_user_items); give their items with --user-items FILE instead")

    # --------------------------------------------------------------------------------- ranking
    def scores(self, fold_in: sparse.spmatrix | np.ndarray) -> np.ndarray:
        """(b, I) rows of users' items -> (b, I) float32 log-probabilities of every item (seen ones included)."""
        logits = torch.from_numpy(recommendation_scores(self.model, fold_in))
        return torch.log_softmax(logits, dim=-1).numpy()

    def recommend_row(self, row: sparse.csr_matrix, k: int = 10) -> list[Recommendation]:
        """The top ``k`` items for the user whose items are the (1, I) ``row``, seen items excluded."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise VaekitError(f"the number of recommendations must be a positive integer, got {k!r}; use e.g. 10")
        scores = self.scores(row)
        scores[0, row.indices] = -np.inf
        k = min(k, len(self.items) - row.nnz)
        if k < 1:
            raise VaekitError("the user already has every item; there is nothing left to recommend")
        best = top_k(scores, k)[0]
        ids = self.items[best].tolist()  # plain ints or strs, as the data file spells them
        return [Recommendation(rank=r + 1, item=item, title=self.rec.titles.get(item, ""), log_prob=float(scores[0, j]))
                for r, (item, j) in enumerate(zip(ids, best, strict=True))]

    def recommend(self, items: Sequence[Any], k: int = 10) -> list[Recommendation]:
        """The top ``k`` items for a user who interacted with ``items`` (ids as in the data file), items
        already given excluded."""
        return self.recommend_row(self.row(items), k)

    def recommend_user(self, user: Any, k: int = 10) -> list[Recommendation]:
        """The top ``k`` items for a user of the run's data (see :meth:`user_row`)."""
        return self.recommend_row(self.user_row(user), k)


def recommender(run: str | Path, device: str = "cpu") -> RunRecommender:
    """The trained recommender of ``run`` (a run directory or checkpoint): ``.recommend(items, k=10)``."""
    return RunRecommender.load(run, device)
