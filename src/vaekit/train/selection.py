"""What picks a run's ``best`` checkpoint when it is not the validation ELBO: a :class:`~vaekit.scoring.Selection`.

The trainer always scores the validation ELBO (the one likelihood path); a selection adds one more
validation score per epoch, recorded in the metrics rows under its ``name`` (e.g. ``val_ndcg@100``),
and the best checkpoint is the epoch with its highest value (``state.selected_on`` = the name,
``state.best_val_score`` = the value). A recommender run (data with interaction splits, ``data.rec``)
selects on validation NDCG@100 (:class:`vaekit.recsys.scores.NdcgSelection`); other runs select on the
validation ELBO, as before. A selection is deterministic (no random draws), so a resumed run chooses
exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import Any

from vaekit.scoring import Selection

__all__ = ["Selection", "selection_for"]


def selection_for(data: Any) -> Selection | None:
    """The selection a run on ``data`` uses: validation NDCG@100 for interaction data with held-out
    validation users (``data.rec``), else None (the validation ELBO)."""
    rec = getattr(data, "rec", None)
    if rec is None or rec.val_in.shape[0] == 0:
        return None
    from vaekit.recsys.scores import NdcgSelection

    return NdcgSelection(rec.val_in, rec.val_out)
