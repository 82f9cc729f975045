"""Time to likelihood: test NLL against wall-clock for vaekit's models beside the canonical pytorch/examples loop.

Every model trains for the same ``--minutes`` on this machine, one after the other in the same run, on
dynamically binarised MNIST (``../shared/data/mnist``; the reference loop (``bench/reference_loop.py``) gets a
fresh Bernoulli draw of the grey-level training images each epoch, so both see the same data distribution).
At each mark of ``--marks`` (minutes; the first epoch end past it) the weights are kept; after training, each
kept model is scored on the same ``--eval-points`` test images with the importance-sampled log p(x)
(``--eval-k`` samples; the reference model through its own encoder and decoder logits, the same estimator
as ``vaekit.evaluate.log_likelihood``). Prints one markdown row per (model, mark) and appends a JSON line to
``--out``.

Models (``--models``): ``reference`` (784-400-20 relu, closed-form KL, Adam 1e-3, batch 128 as in
pytorch/examples), ``vaekit-vae`` (the same network and optimiser in vaekit), ``vaekit-vamp`` (the same with a
VampPrior, K = 500), ``vaekit-iwae`` (the same network, IWAE k = 5), ``vaekit-hvae`` (two levels of 20 with the
VampPrior). Reference figures: IWAE paper VAE 86.76 nats, IWAE k = 50 84.78 (their 784-200-200-50 network after
3,280 epochs; bench/reproduce.py runs those settings).

Usage::

    .venv/bin/python bench/time_to_likelihood.py --minutes 30 --marks 1,3,10,30            # the lead's table
    .venv/bin/python bench/time_to_likelihood.py --minutes 0.2 --marks 0.1,0.2 --limit 600 --eval-k 20 \\
        --eval-points 50                                                                # smoke (< 1 minute)
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from reference_loop import ReferenceLoop, ReferenceVAE
from reproduce import SHARED, Marks, test_nll
from torch.utils.data import DataLoader, TensorDataset

from vaekit.config import Config, ModelConfig, TrainConfig
from vaekit.data import DataConfig, load_data
from vaekit.evaluate import standard_error
from vaekit.train import fit

MODELS = ("reference", "vaekit-vae", "vaekit-vamp", "vaekit-iwae", "vaekit-hvae")


@torch.inference_mode()
def reference_nll(model: ReferenceVAE, x: torch.Tensor, k: int, seed: int, chunk: int = 250) -> tuple[float, float]:
    """-log p(x) (mean over rows, nats) and its standard error for the reference model: log (1/k) sum_j
    p(x|z_j) p(z_j) / q(z_j|x), z_j ~ q(z|x), with the Bernoulli likelihood from the decoder's logits."""
    gen = torch.Generator().manual_seed(seed)
    x = x.reshape(len(x), -1)
    mu, logvar = model.encode(x)
    std = torch.exp(0.5 * logvar)
    acc = None
    for done in range(0, k, chunk):
        m = min(chunk, k - done)
        eps = torch.randn((m, *mu.shape), generator=gen)
        z = mu + std * eps  # (m, n, d)
        logits = model.fc4(F.relu(model.fc3(z)))
        log_px = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").sum(-1)
        log_pz = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_qz = torch.distributions.Normal(mu, std).log_prob(z).sum(-1)
        lse = torch.logsumexp(log_px + log_pz - log_qz, 0)
        acc = lse if acc is None else torch.logaddexp(acc, lse)
    assert acc is not None
    ll = acc.double() - math.log(k)
    return -float(ll.mean()), standard_error(ll)


def train_reference(x_grey: torch.Tensor, marks_s: list[float], seed: int) -> list[tuple[float, float, int, dict]]:
    """The canonical loop for the marks' time; weights kept at the first epoch end past each mark."""
    loop = ReferenceLoop(torch.bernoulli(x_grey), batch_size=128, seed=seed)
    gen = torch.Generator().manual_seed(seed)
    kept, todo, t0, epoch = [], sorted(marks_s), time.perf_counter(), 0
    while todo:
        data = TensorDataset(torch.bernoulli(x_grey, generator=gen), torch.zeros(len(x_grey), dtype=torch.long))
        loop.loader = DataLoader(data, batch_size=128, shuffle=True)  # a fresh binarisation per epoch
        loop.train_epoch()
        epoch += 1
        elapsed = time.perf_counter() - t0
        while todo and elapsed >= todo[0]:
            kept.append((todo.pop(0), elapsed, epoch, copy.deepcopy(loop.model.state_dict())))
    return kept


def vaekit_config(name: str, data: DataConfig, seed: int) -> Config:
    """784-400-20 relu Bernoulli VAE, Adam 1e-3, batch 128: the reference's network in vaekit (and variants)."""
    model = ModelConfig(latent_dim=20, hidden=(400,), activation="relu", likelihood="bernoulli",
                        prior="vamp" if name in ("vaekit-vamp", "vaekit-hvae") else "standard-normal",
                        prior_components=500, levels=2 if name == "vaekit-hvae" else 1)
    iwae = name == "vaekit-iwae"
    train = TrainConfig(epochs=100_000, batch_size=128, lr=1e-3, objective="iwae" if iwae else "elbo",
                        iwae_k=5 if iwae else 0, device="cpu", seed=seed, keep_last=1)
    return Config(name=f"ttl-{name}-{time.strftime('%Y%m%d-%H%M%S')}", data=data, model=model, train=train)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--marks", default="1,3,10,30")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--eval-k", type=int, default=5000)
    p.add_argument("--eval-points", type=int, default=1000, help="test images scored (0: all 10,000)")
    p.add_argument("--data-dir", default=str(SHARED))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path(__file__).with_name("TIME_TO_LIKELIHOOD.jsonl"))
    args = p.parse_args(argv)
    marks_s = [float(m) * 60 for m in args.marks.split(",") if float(m) <= args.minutes + 1e-9]
    data = DataConfig(name="mnist", dir=args.data_dir, binarize="dynamic", download=False, limit=args.limit)
    bundle = load_data(data)
    n_test = len(bundle.test) if args.eval_points == 0 else min(args.eval_points, len(bundle.test))
    x_test = bundle.test.batch_of(torch.arange(n_test), torch.Generator().manual_seed(args.seed)).x
    raw = bundle.train.x  # the training split's grey levels as stored (uint8 0..255)
    x_grey = raw.reshape(len(raw), -1).float() / 255.0
    rows = []
    print("| model | mark min | trained min | epochs | test pts | k | NLL nats |")
    for name in args.models.split(","):
        if name == "reference":
            kept = train_reference(x_grey, marks_s, args.seed)
            ref = ReferenceVAE(data_dim=x_grey.shape[1])
            scored = []
            for mark, elapsed, epoch, state in kept:
                ref.load_state_dict(state)
                scored.append((mark, elapsed, epoch, *reference_nll(ref, x_test, args.eval_k, args.seed)))
        else:
            marks = Marks(marks_s)
            _, trainer = fit(vaekit_config(name, data, args.seed), Path(tempfile.mkdtemp(prefix="vaekit-ttl-")),
                             callbacks=[marks])
            scored = []
            for mark, elapsed, epoch, state in marks.kept:
                trainer.model.load_state_dict(state)
                scored.append((mark, elapsed, epoch, *test_nll(trainer.model, x_test, args.eval_k, args.seed)))
        for mark, elapsed, epoch, nll, se in scored:
            print(f"| {name} | {mark / 60:g} | {elapsed / 60:.2f} | {epoch} | {n_test} | {args.eval_k} | "
                  f"{nll:.2f} ± {se:.2f} |", flush=True)
            rows.append({"model": name, "mark_min": mark / 60, "trained_min": elapsed / 60, "epoch": epoch,
                         "nll": nll, "se": se})
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"cpu, {platform.node()}",
              "command": "bench/time_to_likelihood.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "test_points": n_test, "eval_k": args.eval_k, "rows": rows}
    with open(args.out, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"appended to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
