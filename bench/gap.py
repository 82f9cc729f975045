"""Where vaekit's training step loses to bench/tight_loop.py's: two counterfactual epochs timed beside both.

vaekit's ``Trainer.train_epoch`` and the tight loop train on the same first ``rows`` MNIST rows (as in
bench/alternate.py), alternated with two altered copies of vaekit's epoch, one short epoch each per round,
each contestant first, middle and last in turn:

* ``no guard``: the non-finite check of every step (one pass over all gradients and the loss that tells fused
  Adam to skip the step) replaced by nothing: what the check costs;
* ``tight forward``: the objective replaced by the tight loop's forward written on vaekit's own layers (the same
  maths and weights, no parts, no distribution objects): what vaekit's composable forward path costs;
* ``both``;
* ``vaekit again``: vaekit's own epoch a second time, unaltered: its change against ``vaekit`` is the harness's
  resolution on this host at this moment (0 on a quiet machine), the yardstick for the other changes.

Printed per batch size: each contestant's median of per-round ratios to the tight loop (1.0 = as fast) and the
median per-round change against vaekit's own epoch. The altered epochs are measurements only: they train the
same model (the trainer's weights move on), and nothing in vaekit changes outside them::

    .venv/bin/python bench/gap.py --rows 2560 --rounds 90 --batches 128
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import statistics
import sys
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


@contextlib.contextmanager
def patched(owner: Any, name: str, value: Any) -> Iterator[None]:
    """``owner.name`` set to ``value`` inside the block, restored after."""
    old = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, old)


def tight_forward(objective: Any, batch: Any, kl_weight: float = 1.0) -> Any:
    """bench/tight_loop.py's loss on the objective's MLP model (784-400-20, ReLU): the ELBO of one draw with
    the closed-form KL and the logits-form Bernoulli, returned as vaekit's loss record."""
    import torch
    import torch.nn.functional as F

    from vaekit.bounds import LossOutput

    enc, dec = objective.model.encoder.net, objective.model.decoder.net
    x = batch.x.flatten(1)
    mu, logvar = enc[2](F.relu(enc[0](x))).chunk(2, dim=-1)
    z = mu + torch.randn(mu.shape) * (0.5 * logvar).exp()
    logits = dec[2](F.relu(dec[0](z)))
    recon = (x * logits).sum(-1) - F.softplus(logits).sum(-1)
    kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(-1)
    return LossOutput(loss=(kl - recon).mean(), recon=recon, kl=kl, bound=recon - kl)


def variants(trainer: Any) -> dict[str, Callable[[], Any]]:
    """vaekit's epoch, its altered copies (``no guard``, ``tight forward``, ``both``) and itself again."""
    import torch

    def no_check(checked: list[Any], found_inf: Any, inv_scale: Any) -> None:
        return None

    def epoch(guard: bool, forward: bool) -> Callable[[], Any]:
        def run() -> Any:
            with contextlib.ExitStack() as stack:
                if not guard:
                    stack.enter_context(patched(torch, "_amp_foreach_non_finite_check_and_unscale_", no_check))
                if forward:
                    stack.enter_context(patched(trainer.objective, "forward",
                                                types.MethodType(tight_forward, trainer.objective)))
                return trainer.train_epoch()
        return run

    def again() -> Any:
        return trainer.train_epoch()

    return {"vaekit": trainer.train_epoch, "no guard": epoch(False, False), "tight forward": epoch(True, True),
            "both": epoch(False, True), "vaekit again": again}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="vaekit's epoch, two counterfactual copies and the tight loop's")
    p.add_argument("--rows", type=int, default=2560, help="training rows per epoch")
    p.add_argument("--rounds", type=int, default=90)
    p.add_argument("--batches", type=int, nargs="+", default=[128])
    p.add_argument("--dir", default=str(HERE.parents[1] / "shared" / "data"), help="data root holding mnist/")
    args = p.parse_args(argv)
    import vaekit  # noqa: F401, I001  before torch: vaekit's OpenMP spin bound applies, as in `vaekit train`
    import torch
    from alternate import alternated, ratios_to
    from machine import cpu_name
    from throughput import load_mnist, make_trainer
    from tight_loop import TightLoop

    data = load_mnist(args.dir, args.rows)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"{args.rows} rows, {args.rounds} rounds, GOMP_SPINCOUNT {os.environ.get('GOMP_SPINCOUNT', 'unset')}",
          flush=True)
    for batch in args.batches:
        trainer = make_trainer(data, batch, "fp32", "cpu")
        tight = TightLoop(data.train.x, batch, scale=data.train.affine[0])
        contestants = [*variants(trainer).items(), ("tight", tight.train_epoch)]
        times = alternated(contestants, args.rounds)
        ratio = ratios_to(times, "tight")
        steps = math.ceil(args.rows / batch)
        print(f"batch {batch}: ms per step (median epoch), median ratio to the tight loop, median change against "
              f"vaekit's epoch")
        for name, _ in contestants:
            change = statistics.median(a - b for a, b in zip(ratio[name], ratio["vaekit"], strict=True))
            print(f"  {name:14s} {statistics.median(times[name]) / steps * 1e3:7.3f} ms  "
                  f"{statistics.median(ratio[name]):.3f}  {change:+.3f}", flush=True)


if __name__ == "__main__":
    main()
