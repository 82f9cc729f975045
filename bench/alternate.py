"""vaekit's training epoch against bench/tight_loop.py's, in short epochs alternated in one process.

On a shared host one full epoch each (bench/throughput.py) can land in different moments of someone else's load:
single rounds there moved by 30%. Here both loops train on the same first ``rows`` MNIST rows, one short epoch
each, in alternating order, ``rounds`` times; printed per batch size: the ms per step of each (best and median
epoch), the ratio of the best epochs and the median of the per-round ratios (tight / vaekit time: 1.0 means as
fast as the tight loop)::

    .venv/bin/python bench/alternate.py --rows 3200 --rounds 41 --batches 128 512
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="vaekit's epoch against the tight loop's, alternated")
    p.add_argument("--rows", type=int, default=3200, help="training rows per epoch")
    p.add_argument("--rounds", type=int, default=41)
    p.add_argument("--batches", type=int, nargs="+", default=[128, 512])
    p.add_argument("--dir", default=str(HERE.parents[1] / "shared" / "data"), help="data root holding mnist/")
    args = p.parse_args(argv)
    import torch
    from machine import cpu_name
    from throughput import load_mnist, make_trainer
    from tight_loop import TightLoop

    import vaekit

    data = load_mnist(args.dir, args.rows)
    print(f"{cpu_name()}, {torch.get_num_threads()} threads, vaekit from {Path(vaekit.__file__).parent}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {args.rows} rows, {args.rounds} rounds")
    for batch in args.batches:
        trainer = make_trainer(data, batch, "fp32", "cpu")
        tight = TightLoop(data.train.x, batch, scale=data.train.affine[0])
        trainer.train_epoch()
        tight.train_epoch()
        times: dict[str, list[float]] = {"vaekit": [], "tight": []}
        ratios = []
        for r in range(args.rounds):
            order = [("vaekit", trainer.train_epoch), ("tight", tight.train_epoch)]
            for name, epoch in order if r % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                epoch()
                times[name].append(time.perf_counter() - t0)
            ratios.append(times["tight"][-1] / times["vaekit"][-1])
        steps = math.ceil(args.rows / batch)
        v, t = times["vaekit"], times["tight"]
        ms = {k: (min(x) / steps * 1e3, statistics.median(x) / steps * 1e3) for k, x in times.items()}
        print(f"batch {batch}: vaekit {ms['vaekit'][0]:.3f} ms/step (median {ms['vaekit'][1]:.3f}), tight "
              f"{ms['tight'][0]:.3f} (median {ms['tight'][1]:.3f}); ratio of the best epochs {min(t) / min(v):.3f}, "
              f"median of per-round ratios {statistics.median(ratios):.3f}", flush=True)


if __name__ == "__main__":
    main()
