"""vaekit's training epoch against bench/tight_loop.py's, in short epochs alternated in one process.

On a shared host one full epoch each (bench/throughput.py) can land in different moments of someone else's load:
single rounds there moved by 30%. Here both loops train on the same first ``rows`` MNIST rows, one short epoch
each, in alternating order, ``rounds`` times; printed per batch size: the ms per step of each (best and median
epoch), the ratio of the best epochs and the median of the per-round ratios (tight / vaekit time: 1.0 means as
fast as the tight loop)::

    .venv/bin/python bench/alternate.py --rows 3200 --rounds 41 --batches 128 512

``--against SRC`` adds a third contestant: the vaekit of another source tree (``SRC/vaekit``, e.g. a checkout of
the commit before a change), imported as a renamed copy (``vaekit_against``) so that both versions train in the
same process and share its noise; printed: each version's median ratio to the tight loop and the median of the
per-round differences (after minus before), the figure to trust for a change of a few percent on a shared host::

    git worktree add /tmp/before HEAD~3
    .venv/bin/python bench/alternate.py --rows 2560 --rounds 120 --batches 128 --against /tmp/before/src
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="vaekit's epoch against the tight loop's, alternated")
    p.add_argument("--rows", type=int, default=3200, help="training rows per epoch")
    p.add_argument("--rounds", type=int, default=41)
    p.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    p.add_argument("--dir", default=str(HERE.parents[1] / "shared" / "data"), help="data root holding mnist/")
    p.add_argument("--against", type=Path, help="a source tree (holding vaekit/) to time in the same process")
    args = p.parse_args(argv)
    import vaekit  # before torch: vaekit's OpenMP spin bound applies, as in `vaekit train`

    # isort: split
    import torch
    from machine import cpu_name
    from throughput import load_mnist, make_trainer
    from tight_loop import TightLoop

    data = load_mnist(args.dir, args.rows)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, vaekit from {Path(vaekit.__file__).parent}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.rows} rows, {args.rounds} rounds")
    against = None if args.against is None else renamed_copy(args.against)
    for batch in args.batches:
        trainer = make_trainer(data, batch, "fp32", "cpu")
        tight = TightLoop(data.train.x, batch, scale=data.train.affine[0])
        contestants: list[tuple[str, Callable[[], Any]]] = [("vaekit", trainer.train_epoch),
                                                            ("tight", tight.train_epoch)]
        if against is not None:
            contestants.append(("against", against_trainer(against, args.dir, args.rows, batch).train_epoch))
        times = alternated(contestants, args.rounds)
        ratios = ratios_to(times, "tight")
        steps = math.ceil(args.rows / batch)
        v, t = times["vaekit"], times["tight"]
        ms = {k: (min(x) / steps * 1e3, statistics.median(x) / steps * 1e3) for k, x in times.items()}
        print(f"batch {batch}: vaekit {ms['vaekit'][0]:.3f} ms/step (median {ms['vaekit'][1]:.3f}), tight "
              f"{ms['tight'][0]:.3f} (median {ms['tight'][1]:.3f}); ratio of the best epochs {min(t) / min(v):.3f}, "
              f"median of per-round ratios {statistics.median(ratios['vaekit']):.3f}", flush=True)
        if against is not None:
            change = statistics.median(a - b for a, b in zip(ratios["vaekit"], ratios["against"], strict=True))
            print(f"batch {batch}: median ratio to the tight loop: {args.against} "
                  f"{statistics.median(ratios['against']):.3f}, this tree {statistics.median(ratios['vaekit']):.3f}; "
                  f"median per-round change {change:+.3f}", flush=True)


def alternated(contestants: list[tuple[str, Callable[[], Any]]], rounds: int) -> dict[str, list[float]]:
    """Seconds of each contestant's call in each of ``rounds`` rounds (after one warm-up call each), the order
    rotated every round so that each runs first, middle and last in turn."""
    for _, run in contestants:
        run()
    times: dict[str, list[float]] = {name: [] for name, _ in contestants}
    for r in range(rounds):
        for name, run in contestants[r % len(contestants):] + contestants[:r % len(contestants)]:
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    return times


def ratios_to(times: dict[str, list[float]], reference: str) -> dict[str, list[float]]:
    """Each contestant's per-round speed relative to ``reference`` (its time / theirs: 1.0 = as fast)."""
    return {name: [t / x for t, x in zip(times[reference], ts, strict=True)] for name, ts in times.items()}


def renamed_copy(src: Path, name: str = "vaekit_against") -> str:
    """``src/vaekit`` copied to a temporary directory as the package ``name`` (its own imports rewritten), that
    directory put on ``sys.path``; returns ``name``."""
    if not (src / "vaekit" / "__init__.py").is_file():
        raise SystemExit(f"--against {src}: no vaekit/__init__.py there; give the src/ directory of a checkout")
    from throughput import scratch_dir

    dest = scratch_dir("vaekit-against-")
    shutil.copytree(src / "vaekit", dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    for f in (dest / name).rglob("*.py"):
        text = re.sub(r"\bfrom vaekit([. ])", rf"from {name}\1", f.read_text())
        text = re.sub(r"\bimport vaekit\b", f"import {name}", text)
        f.write_text(text.replace('"vaekit.', f'"{name}.'))
    sys.path.insert(0, str(dest))
    return name


def against_trainer(name: str, data_dir: str, rows: int, batch: int) -> Any:
    """A Trainer of the renamed package ``name`` on the first ``rows`` MNIST rows (its own data layer: its
    batches are its own classes), configured as bench/throughput.py configures vaekit's."""
    from dataclasses import replace

    config = importlib.import_module(f"{name}.config")
    data_mod = importlib.import_module(f"{name}.data")
    train = importlib.import_module(f"{name}.train")
    data = data_mod.load_data(data_mod.DataConfig(name="mnist", dir=data_dir, download=False), "bernoulli")
    data = replace(data, train=replace(data.train, x=data.train.x[:rows]))
    model = config.ModelConfig(hidden=(400,), latent_dim=20, likelihood="bernoulli", activation="relu")
    cfg = config.Config(name="bench", model=model, train=config.TrainConfig(
        batch_size=batch, lr=1e-3, seed=0, device="cpu", precision="fp32", threads=0))
    from throughput import scratch_dir

    return train.Trainer(cfg, scratch_dir("vaekit-bench-"), data)


if __name__ == "__main__":
    main()
