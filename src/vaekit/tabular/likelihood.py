"""The ``mixed`` likelihood: one distribution per table column, chosen by ``model.columns``.

``model.columns`` lists the columns' types in order ('real', 'binary', 'count', 'negbin',
'categorical:K'); the model's event is one row of width W = value slots + one indicator slot per column
(:mod:`vaekit.tabular.schema`). The decoder predicts two parameters per slot (n_params = 2), shape
(*batch, 2, W), in the model's scaled units:

* real: mean m and, with ``model.variance = per-output``, log sigma s (``per-dim``: a free ``log_sigma``
  per slot); p(x) = N(x; loc + scale * m, (scale * exp(s))^2), so the density is in the data's units
  (the Jacobian -log scale is in it);
* binary: logit m; Bernoulli;
* count: log rate m + log(loc) (the column mean as an offset); Poisson;
* negbin: log mean m + log(loc), log total count s; NegativeBinomial(r = exp(s), logits = log mean - s),
  whose mean is exp(log mean);
* categorical: logits m over the column's K slots; each slot's term is x_k * log softmax(m)_k, so the
  column's terms sum to log p(category) (x one-hot);
* indicator slots: always 0 nats (the encoder reads them; nothing is modelled).

The distribution is elementwise over the W slots (``Independent(MixedColumns, 1)``) so
:func:`vaekit.distributions.masked_log_prob` drops the unobserved slots: the row log-likelihood is the
sum of the observed columns' terms, in nats.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution, Independent, NegativeBinomial, Poisson, constraints

from vaekit.errors import VaekitError
from vaekit.likelihoods import LIKELIHOODS, Likelihood

if TYPE_CHECKING:
    from vaekit.config import ModelConfig

LOG_2PI = 1.8378770664093453


def parse_layout(columns: Sequence[str]) -> list[tuple[str, int]]:
    """``model.columns`` -> [(type, slots)], e.g. ('real', 'categorical:3') -> [('real', 1), ('categorical', 3)]."""
    out = []
    for c in columns:
        kind, _, k = c.partition(":")
        if kind == "categorical":
            if not k.isdigit() or int(k) < 1:
                raise VaekitError(f"model.columns entry '{c}': a categorical column is 'categorical:K' with K >= 1 "
                                  "levels")
            out.append((kind, int(k)))
        elif kind in ("real", "binary", "count", "negbin") and not k:
            out.append((kind, 1))
        else:
            raise VaekitError(f"model.columns entry '{c}': use real, binary, count, negbin or categorical:K")
    return out


class MixedColumns(Distribution):
    """Independent per-slot terms of one table row (see the module docstring). Batch shape (*batch, W),
    event shape (). ``log_prob(x)`` returns each slot's term in nats; ``mean`` the decoder means in data
    units (real: the mean; binary: P(1); count / negbin: the mean; categorical: the level probabilities;
    indicator: 1); ``sample()`` one draw per slot (a categorical column gets a one-hot draw)."""

    arg_constraints: ClassVar[dict[str, Any]] = {}
    support = constraints.real
    has_rsample = False

    def __init__(self, parts: dict[str, Tensor], layout: MixedLikelihood, batch_shape: torch.Size) -> None:
        self.parts, self.layout = parts, layout
        super().__init__(batch_shape, torch.Size(), validate_args=False)

    def _assemble(self, pieces: list[Tensor]) -> Tensor:
        """Per-type blocks (in layout.type_order) -> (*batch, W) in slot order."""
        return torch.cat(pieces, -1).index_select(-1, self.layout.inverse)

    def _take(self, x: Tensor, name: str) -> Tensor:
        return x.index_select(-1, getattr(self.layout, f"idx_{name}"))

    def log_prob(self, value: Tensor) -> Tensor:
        p = self.parts
        x = value.expand(self.batch_shape)
        pieces = []
        xr = self._take(x, "real")
        pieces.append(-0.5 * ((xr - p["real_mean"]) / p["real_sigma"]).square() - torch.log(p["real_sigma"])
                      - 0.5 * LOG_2PI)
        xb = self._take(x, "binary")
        pieces.append(-F.binary_cross_entropy_with_logits(p["binary_logit"], xb, reduction="none"))
        xc = self._take(x, "count")
        pieces.append(Poisson(p["count_rate"], validate_args=False).log_prob(xc))
        xn = self._take(x, "negbin")
        pieces.append(NegativeBinomial(p["negbin_r"], logits=p["negbin_logits"], validate_args=False).log_prob(xn))
        pieces.append(self._take(x, "cat") * p["cat_logp"])
        pieces.append(torch.zeros_like(self._take(x, "ind")))
        return self._assemble(pieces)

    @property
    def mean(self) -> Tensor:
        p = self.parts
        pieces = [p["real_mean"], torch.sigmoid(p["binary_logit"]), p["count_rate"],
                  p["negbin_r"] * torch.exp(p["negbin_logits"]), torch.exp(p["cat_logp"]),
                  torch.ones_like(p["ind"])]
        return self._assemble(pieces)

    def sample(self, sample_shape: torch.Size | Sequence[int] = ()) -> Tensor:
        p, shape = self.parts, torch.Size(sample_shape)
        with torch.no_grad():
            def grow(t: Tensor) -> Tensor:
                return t.expand(*shape, *t.shape)
            real = torch.normal(grow(p["real_mean"]), grow(p["real_sigma"]))
            binary = torch.bernoulli(torch.sigmoid(grow(p["binary_logit"])))
            count = torch.poisson(grow(p["count_rate"]))
            negbin = NegativeBinomial(grow(p["negbin_r"]), logits=grow(p["negbin_logits"]),
                                      validate_args=False).sample()
            logp = grow(p["cat_logp"])
            cat = torch.zeros_like(logp)
            for sl in self.layout.cat_blocks:  # one draw per categorical column (its place in the cat block)
                k = torch.distributions.Categorical(logits=logp[..., sl], validate_args=False).sample()
                cat[..., sl] = F.one_hot(k, sl.stop - sl.start).to(cat.dtype)
            ind = torch.ones_like(grow(p["ind"]))
            return self._assemble([real, binary, count, negbin, cat, ind])


@LIKELIHOODS.register("mixed")
class MixedLikelihood(Likelihood):
    """Per-column likelihoods of a mixed-type table row (module docstring); the layout is
    ``model.columns``, set from the data when a table is trained."""

    idx_real: Tensor
    idx_binary: Tensor
    idx_count: Tensor
    idx_negbin: Tensor
    idx_cat: Tensor
    idx_ind: Tensor
    inverse: Tensor

    def __init__(self, config: ModelConfig, event_shape: Sequence[int], sigma_units: str = "scaled") -> None:
        super().__init__(config, event_shape, sigma_units)
        columns = tuple(getattr(config, "columns", ()))
        if not columns:
            raise VaekitError("model.likelihood mixed needs the table's column layout (model.columns); train on a "
                              "table (--data.path table.csv --model.likelihood mixed) and it is set from the data")
        layout = parse_layout(columns)
        n_values = sum(k for _, k in layout)
        width = n_values + len(layout)
        if self.event_shape != (width,):
            raise VaekitError(f"model.columns describes rows of width {width} ({len(layout)} columns) but the data "
                              f"have shape {self.event_shape}; train on the table the layout came from")
        groups: dict[str, list[int]] = {"real": [], "binary": [], "count": [], "negbin": [], "cat": []}
        self.cat_groups: list[slice] = []
        at = 0
        for kind, k in layout:
            if kind == "categorical":
                groups["cat"] += list(range(at, at + k))
                self.cat_groups.append(slice(at, at + k))
            else:
                groups[kind].append(at)
            at += k
        order = [*groups["real"], *groups["binary"], *groups["count"], *groups["negbin"], *groups["cat"],
                 *range(n_values, width)]
        for name, idx in (*groups.items(), ("ind", list(range(n_values, width)))):
            self.register_buffer(f"idx_{name}", torch.tensor(idx, dtype=torch.long), persistent=False)
        self.register_buffer("inverse", torch.argsort(torch.tensor(order)), persistent=False)
        # where each categorical column's slots sit inside the 'cat' block (for the grouped softmax)
        offsets, at = [], 0
        for sl in self.cat_groups:
            offsets.append(slice(at, at + sl.stop - sl.start))
            at += sl.stop - sl.start
        self.cat_blocks = offsets
        self.per_output = config.variance == "per-output"
        if not self.per_output:
            self.log_sigma = nn.Parameter(torch.zeros(len(groups["real"])))

    @property
    def n_params(self) -> int:
        return 2

    def forward(self, params: Tensor, loc: Tensor, scale: Tensor) -> Distribution:
        first, second = params.unbind(-2)  # (*batch, W) each
        batch = first.shape

        def take(t: Tensor, name: str) -> Tensor:
            return t.index_select(-1, getattr(self, f"idx_{name}"))

        r_loc, r_scale = take(loc, "real"), take(scale, "real")
        log_sigma = take(second, "real") if self.per_output else self.log_sigma
        parts = {"real_mean": take(first, "real") * r_scale + r_loc,
                 "real_sigma": torch.exp(log_sigma) * r_scale,
                 "binary_logit": take(first, "binary"),
                 "count_rate": torch.exp(take(first, "count") + torch.log(take(loc, "count").clamp_min(1e-3))),
                 "ind": take(first, "ind")}
        nb_log_mean = take(first, "negbin") + torch.log(take(loc, "negbin").clamp_min(1e-3))
        nb_log_r = take(second, "negbin")
        parts["negbin_r"] = torch.exp(nb_log_r)
        parts["negbin_logits"] = nb_log_mean - nb_log_r
        logits = take(first, "cat")
        parts["cat_logp"] = torch.cat([F.log_softmax(logits[..., b], -1) for b in self.cat_blocks], -1) \
            if self.cat_blocks else logits
        parts = {k: v.expand(*batch[:-1], v.shape[-1]) for k, v in parts.items()}
        return Independent(MixedColumns(parts, self, batch), 1, validate_args=False)
