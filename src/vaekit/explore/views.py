"""How a decoded output is shown on the page: one :class:`OutputView` per kind of data.

A view turns decoder means x_hat (m, *event_shape), in the data's own units (what ``model.decode(z).mean``
returns), into JSON the page draws: an image view sends PNGs, a table view the decoded row with its column
names. :func:`view_for` picks the view of a run from its schema and metadata.

A recommender run (``model.likelihood == "multinomial"``, interaction data) gets :class:`RecommenderView`:
its decoder mean is a probability vector over the run's items, shown as the top items with their titles; an
input row (whole interaction counts) is shown as the items it holds. Adding another view: a final subclass
of :class:`OutputView`, registered in :data:`VIEWS`, one line in :func:`view_for`, and one branch in
``renderOutput`` of static/explorer.js for its ``kind``.
"""

from __future__ import annotations

import base64
import io
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, final

import numpy as np
import torch
from PIL import Image

from vaekit.data.rundata import display_range
from vaekit.registry import Registry


class OutputView(ABC):
    """Renders decoder means of one kind of data for the page."""

    @abstractmethod
    def render(self, x_hat: torch.Tensor) -> list[dict[str, Any]]:
        """One JSON-able dict per row of ``x_hat`` (m, *event_shape), data units; each has a ``kind``."""

    def describe(self) -> dict[str, Any]:
        """What the page needs to know before the first output (its kind and labels)."""
        return {"kind": type(self).__name__}


ViewFactory = Callable[[dict[str, Any], dict[str, Any]], OutputView]
#: name -> factory(meta, data_info) of a view.
VIEWS: Registry[ViewFactory] = Registry("explorer view", "view")


def png_data_url(pixels: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URL of ``pixels``: uint8 (H, W) grey or (H, W, 3) colour."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def to_pixels(x: torch.Tensor, lo: float, hi: float) -> np.ndarray:
    """One image (H, W), (1, H, W) or (C, H, W) in data units -> uint8 (H, W) or (H, W, C): ``lo`` black,
    ``hi`` white, values outside clipped, rounded to the nearest level."""
    a = ((x.detach().double().cpu() - lo) / max(hi - lo, 1e-12)).clamp(0, 1).numpy()
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.moveaxis(a, 0, -1)
    return np.rint(a * 255).astype(np.uint8)


@final
class ImageView(OutputView):
    """Images as PNG data URLs, the run's display range (:func:`vaekit.data.rundata.display_range`) mapped
    to black..white, as in ``vaekit sample`` grids."""

    def __init__(self, meta: dict[str, Any], info: dict[str, Any]) -> None:
        self.lo, self.hi = display_range(meta)

    def render(self, x_hat: torch.Tensor) -> list[dict[str, Any]]:
        return [{"kind": "image", "png": png_data_url(to_pixels(x, self.lo, self.hi))} for x in x_hat]

    def describe(self) -> dict[str, Any]:
        return {"kind": "image", "range": [self.lo, self.hi]}


@final
class TableView(OutputView):
    """Rows of a numeric table: the decoded values in the data's units under the data's column names
    (``f0, f1, ...`` when the data have none)."""

    def __init__(self, meta: dict[str, Any], info: dict[str, Any]) -> None:
        self.columns = [str(c) for c in (info.get("columns") or meta.get("data", {}).get("columns") or [])]

    def render(self, x_hat: torch.Tensor) -> list[dict[str, Any]]:
        rows = x_hat.detach().double().cpu().reshape(len(x_hat), -1).numpy()
        if len(self.columns) != rows.shape[1]:
            self.columns = [f"f{i}" for i in range(rows.shape[1])]
        return [{"kind": "table", "columns": self.columns, "values": [float(v) for v in row]} for row in rows]

    def describe(self) -> dict[str, Any]:
        return {"kind": "table", "columns": self.columns}


@final
class RecommenderView(OutputView):
    """A recommender's rows over its items (``rec``: :class:`vaekit.recsys.bundle.RecSplits`, the item ids and
    titles): a decoded row (the multinomial's item probabilities) as its ``top`` most probable items; an input
    row (whole counts: the items a user has) as the items it holds (at most ``top``, with their count)."""

    def __init__(self, rec: Any, top: int = 10) -> None:
        self.items, self.titles, self.top = np.asarray(rec.items), rec.titles, int(top)

    def _item(self, j: int, score: float) -> dict[str, Any]:
        item = self.items[j:j + 1].tolist()[0]  # a plain int or str, as the data file spells it
        return {"id": item, "title": str(self.titles.get(item, item)), "score": score}

    def render(self, x_hat: torch.Tensor) -> list[dict[str, Any]]:
        out = []
        for row in x_hat.detach().double().cpu().reshape(len(x_hat), -1).numpy():
            if np.all(row == np.round(row)) and row.sum() >= 1:  # counts: the items a user has
                held = np.flatnonzero(row)
                out.append({"kind": "items", "what": f"{len(held)} items given",
                            "items": [self._item(int(j), float(row[j])) for j in held[:self.top]]})
            else:  # item probabilities: the top items, most probable first (ties: lower column)
                best = np.lexsort((np.arange(len(row)), -row))[:self.top]
                out.append({"kind": "items", "what": f"top {len(best)} of {len(row)} items (probability)",
                            "items": [self._item(int(j), float(row[j])) for j in best]})
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": "items", "n_items": len(self.items), "top": self.top}


VIEWS.register("image")(ImageView)
VIEWS.register("table")(TableView)


def view_for(schema_kind: str, likelihood: str, meta: dict[str, Any], info: dict[str, Any],
             rec: Any = None) -> OutputView:
    """The view of a run: the top items for a recommender (``rec``: the run's ``data.rec``), images for
    image data, a table row otherwise."""
    if rec is not None:
        return RecommenderView(rec)
    return VIEWS.get("image" if schema_kind == "image" else "table")(meta, info)
