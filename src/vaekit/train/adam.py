"""Adam with torch's fused kernel, without ``torch.optim``'s machinery.

:class:`FusedAdam` makes exactly the update of ``torch.optim.Adam(params, lr, betas, eps, weight_decay,
fused=True)`` (the same ``torch._fused_adam_`` kernel on the same float32 step counters; tested bit for bit),
and its ``state_dict`` has that optimiser's layout, so checkpoints written by either load into the other.
Why not ``torch.optim.Adam`` itself: the first call of any ``torch.optim`` optimiser imports ``torch._dynamo``
(its methods are wrapped by ``torch._disable_dynamo``), 0.7 s of every run's start-up on a 2-core CPU for a
compiler vaekit does not use in training.

Only what the trainer needs: one parameter group with a fixed parameter list (``param_groups[0]["lr"]`` may be
changed between steps), ``zero_grad``, ``step`` and the ``found_inf`` flag: a float32 scalar tensor, 1.0 to
skip a step (weights, moments and step counters all left unchanged, as torch's fused Adam does with a gradient
scaler).

A step where every parameter has a gradient (every training step) passes the kernel argument lists built at
the first such step, so its Python work is one list of gradients and two kernel calls: about 40 us less per
batch-128 step than rebuilding them, measured inside training steps (bench/RESULTS.md). Those lists hold the
state tensors, so the state is replaced only through :meth:`load_state_dict`, which drops them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, final

import torch
from torch import Tensor

#: One kernel call's arguments: the gradients' positions among the step's parameters (None: all of them), then
#: the parameters, first moments, second moments and step counters.
KernelArgs = tuple[list[int] | None, list[Tensor], list[Tensor], list[Tensor], list[Tensor]]


@final
class FusedAdam:
    """Adam (Kingma & Ba 2015) with L2 weight decay added to the gradient (torch's ``Adam``, not ``AdamW``).

    ``params``: the tensors to optimise (all on one device and float dtype per kernel call; torch groups
    them). ``lr``, ``betas``, ``eps``, ``weight_decay`` as in ``torch.optim.Adam``."""

    def __init__(self, params: Iterable[Tensor], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        plist = list(params)
        if not plist:
            raise ValueError("FusedAdam got an empty parameter list")
        self.param_groups: list[dict[str, Any]] = [{
            "params": plist, "lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
            "amsgrad": False, "maximize": False, "foreach": None, "capturable": False, "differentiable": False,
            "fused": True, "decoupled_weight_decay": False}]
        self.state: dict[Tensor, dict[str, Tensor]] = {}
        self.found_inf: Tensor | None = None
        #: per (device, dtype): the parameters, moments and step counters the kernel takes, with the gradients'
        #: positions (None: all of them); built when every parameter has a gradient, dropped by load_state_dict
        self._plan: list[KernelArgs] | None = None

    @property
    def params(self) -> list[Tensor]:
        return list(self.param_groups[0]["params"])

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop (``set_to_none``) or zero every parameter's gradient."""
        for p in self.param_groups[0]["params"]:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.detach_().zero_()

    def _slot(self, p: Tensor) -> dict[str, Tensor]:
        state = self.state.get(p)
        if not state:  # torch's fused Adam: a float32 step counter on the parameter's device
            state = self.state[p] = {"step": torch.zeros((), dtype=torch.float32, device=p.device),
                                     "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                     "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        return state

    @torch.no_grad()
    def step(self) -> None:
        """One Adam update of every parameter that has a gradient (skipped entirely when ``found_inf`` is 1)."""
        group = self.param_groups[0]
        params = group["params"]
        grads = [p.grad for p in params]
        if any(g is None for g in grads):  # some parameters sit this step out: their state is left as it is
            kept = [i for i, g in enumerate(grads) if g is not None]
            if kept:
                self._update(self._groups([params[i] for i in kept]), [grads[i] for i in kept])
            return
        if self._plan is None:
            self._plan = self._groups(params)
        self._update(self._plan, grads)

    def _groups(self, params: list[Tensor]) -> list[KernelArgs]:
        """The kernel's argument lists for ``params`` (their state created where missing), one entry per
        (device, dtype): the positions in ``params`` (None when the entry holds them all), the parameters,
        first and second moments and step counters."""
        slots = [self._slot(p) for p in params]
        by_device: dict[tuple[torch.device, torch.dtype], list[int]] = {}
        for i, p in enumerate(params):
            by_device.setdefault((p.device, p.dtype), []).append(i)
        return [(None if len(idx) == len(params) else idx, [params[i] for i in idx],
                 [slots[i]["exp_avg"] for i in idx], [slots[i]["exp_avg_sq"] for i in idx],
                 [slots[i]["step"] for i in idx]) for idx in by_device.values()]

    def _update(self, groups: list[KernelArgs], grads: list[Tensor]) -> None:
        group = self.param_groups[0]
        beta1, beta2 = group["betas"]
        lr = float(group["lr"])
        for idx, params, exp_avgs, exp_avg_sqs, steps in groups:
            found_inf = None if self.found_inf is None else self.found_inf.to(params[0].device, non_blocking=True)
            # a skipped step (found_inf 1) leaves the counters as they were: + (1 - found_inf), one pass (a list
            # of that one tensor: torch's per-tensor loop then reads it as it is, without a copy per counter)
            torch._foreach_add_(steps, 1 if found_inf is None else [1 - found_inf] * len(steps))
            torch._fused_adam_(
                params, grads if idx is None else [grads[i] for i in idx], exp_avgs, exp_avg_sqs, [], steps,
                amsgrad=False, lr=lr, beta1=beta1, beta2=beta2, weight_decay=group["weight_decay"], eps=group["eps"],
                maximize=False, grad_scale=None, found_inf=found_inf)

    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Adam.state_dict()``'s layout: ``state`` keyed by parameter position, and the group's
        hyper-parameters with ``params`` as positions."""
        params = self.params
        position = {id(p): i for i, p in enumerate(params)}
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["params"] = list(range(len(params)))
        return {"state": {position[id(p)]: dict(s) for p, s in self.state.items()}, "param_groups": [group]}

    def load_state_dict(self, sd: dict[str, Any]) -> None:
        """Load a state dict of this class or of ``torch.optim.Adam`` (moments cast to each parameter's dtype
        and device; step counters to float32 on the parameter's device)."""
        params = self.params
        groups = sd.get("param_groups", [])
        held = sum(len(g.get("params", [])) for g in groups)
        if len(groups) != 1 or held != len(params):
            raise ValueError(f"optimizer state holds {held} parameters in {len(groups)} groups; this optimiser has "
                             f"{len(params)} parameters in one group")
        for key in ("lr", "betas", "eps", "weight_decay"):
            if key in groups[0]:
                self.param_groups[0][key] = tuple(groups[0][key]) if key == "betas" else groups[0][key]
        self.state, self._plan = {}, None
        for index, s in sd.get("state", {}).items():
            p = params[int(index)]
            self.state[p] = {k: (v.to(device=p.device, dtype=torch.float32) if k == "step"
                                 else v.to(device=p.device, dtype=p.dtype)) for k, v in s.items()}
