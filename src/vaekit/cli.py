"""Command line: parse, then one library call per sub-command. Heavy modules are imported lazily so
that ``vaekit --help`` answers at once."""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

_PYTHON_SHOWWARNING = warnings.showwarning

EPILOG_TRAIN = """\
config overrides: any field of the config as --section.key VALUE, e.g.
  --train.lr 3e-4 --train.epochs 50 --model.latent_dim 2 --model.hidden 400,200
  --data.name mnist --data.binarize dynamic --model.likelihood gaussian
The resolved config is saved as runs/<name>/config.toml (same keys)."""

EPILOG_COMPARE = """\
examples:
  vaekit compare runs/ae runs/vae --out ae-vs-vae.html
  vaekit compare --train ae,vae,beta-vae:4 --model.latent_dim 2 --train.epochs 20
--train trains each variant (ae = plain autoencoder, vae = beta 1, beta-vae:B = beta B) with the same seed,
data and architecture into RUNS/NAME/<variant>, evaluates it with --k importance samples and compares."""


EPILOG_CONDITION = """\
conditional runs (--model.condition label | covariates) need their condition:
  vaekit sample runs/cvae --label 3 -n 16 --out threes.png
  vaekit sample runs/cvae-cov --condition 0.5,1.2 --out s.npy   (k covariates in the data's units)
  vaekit sample runs/cvae-cov --condition cov.npy --out s.npy   (one row of covariates per sample)"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vaekit", description="Variational autoencoders: train, evaluate, "
                                "sample, reconstruct and encode.")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    t = sub.add_parser("train", help="train a model into runs/<name>/", epilog=EPILOG_TRAIN,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--config", type=Path, help="TOML config file (overrides apply on top)")
    t.add_argument("--name", help="run name (default: run-<date>-<time>)")
    t.add_argument("--runs", type=Path, default=Path("runs"), help="folder holding runs (default: runs)")
    t.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its last checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.add_argument("--no-artifacts", action="store_true", help="skip sample/reconstruction grids")
    t.add_argument("--no-report", action="store_true", help="skip the HTML report (runs/<name>/report.html)")
    t.add_argument("--report-now", action="store_true",
                   help="write report.html before returning (default: a background process writes it, "
                        "atomically; also VAEKIT_REPORT=now)")

    e = sub.add_parser("eval", help="test ELBO, importance-sampled log-likelihood, active units, probe",
                       epilog="data overrides: --data.KEY VALUE evaluates on other data of the same shape, "
                       "e.g. --data.binarize_seed 1; --eval.KEY VALUE sets eval defaults.")
    e.add_argument("run", type=Path)
    e.add_argument("--k", type=int, help="importance samples per point (default: config eval.k = 5000)")
    e.add_argument("--chunk", type=int, help="samples processed at once (memory bound; default eval.chunk)")
    e.add_argument("--batch-size", type=int, help="points processed at once (default eval.batch_size)")
    e.add_argument("--repeats", type=int, help="independent repeats of the estimate, for its Monte-Carlo error")
    e.add_argument("--naive-k", type=int, help="prior samples of the naive estimator (default eval.naive_k)")
    e.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: networks under bfloat16 autocast, log-probs in float32")
    e.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument("--out", type=Path, metavar="FILE",
                   help="write the result here instead of RUN/eval.json (e.g. for a read-only run)")

    s = sub.add_parser("sample", help="draw from the prior and decode", epilog=EPILOG_CONDITION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("run", type=Path)
    s.add_argument("-n", type=int, help="number of samples (default 64, or the rows of a --label/--condition .npy)")
    s.add_argument("--out", type=Path, required=True, help=".png grid or .npy array")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--draw", action="store_true", help="draw x ~ p(x|z) instead of the decoder mean")
    _add_condition_args(s)

    r = sub.add_parser("reconstruct", help="reconstruct test examples (inputs above outputs)")
    r.add_argument("run", type=Path)
    r.add_argument("--out", type=Path, required=True, help=".png grid or .npy array (2, n, ...)")
    r.add_argument("-n", type=int, default=32)

    c = sub.add_parser("encode", help="posterior means of an array or a split as (n, d) .npy")
    c.add_argument("run", type=Path)
    c.add_argument("--input", type=Path, help=".npy array in the model's data units (default: a split)")
    c.add_argument("--split", choices=("train", "val", "test"), default="test")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--sample", action="store_true", help="one draw z ~ q(z|x) instead of the mean")
    _add_condition_args(c, " (with --input; a split uses its own)")

    im = sub.add_parser("impute", help="fill the missing cells of a table with a mixed-type run (docs/tables.md)")
    im.add_argument("run", type=Path)
    im.add_argument("--input", type=Path, required=True, help="CSV/TSV table with a header and empty cells")
    im.add_argument("--out", type=Path, required=True,
                    help="filled table; with --draws m: OUT_1 ... OUT_m (e.g. filled_1.csv)")
    im.add_argument("--draws", type=int, default=0,
                    help="multiple imputation: m draws by importance resampling (default 0: one table of "
                         "conditional means / modes)")
    im.add_argument("--k", type=int, default=200, help="importance samples per row (default 200)")
    im.add_argument("--seed", type=int, default=0)

    rc = sub.add_parser("recommend", help="top items for a user of a recommender run (items not already seen)")
    rc.add_argument("run", type=Path)
    rc.add_argument("--user-items", type=Path, metavar="FILE", help="the user's item ids, one per line")
    rc.add_argument("--user", metavar="ID", help="a user id of the run's data (their items in the run's split)")
    rc.add_argument("--top", type=int, default=10, help="number of recommendations (default 10)")
    rc.add_argument("--json", action="store_true", help="print one JSON list")
    x = sub.add_parser("export", help="write the encoder and decoder as ONNX graphs for serving (docs/export.md)")
    x.add_argument("run", type=Path)
    x.add_argument("--format", default="onnx", help="export format (default onnx, the only one)")
    x.add_argument("--out", type=Path, required=True, metavar="DIR",
                   help="folder to create: encoder.onnx, decoder.onnx, preprocessing.json")
    x.add_argument("--force", action="store_true", help="replace a previous export in DIR")
    _add_report_parsers(sub)

    x = sub.add_parser("explore", help="interactive latent explorer in the browser (one run, or two side by side)")
    x.add_argument("runs", type=Path, nargs="+", metavar="RUN", help="a run directory, or two to compare")
    x.add_argument("--port", type=int, default=8050, help="port to listen on (default 8050; 0 = any free port)")
    x.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    x.add_argument("--points", type=int, default=2000, help="test points on the map (default 2000)")
    x.add_argument("--seed", type=int, default=0, help="seed of the map's subsample and t-SNE")
    return p


def _add_condition_args(p: argparse.ArgumentParser, where: str = "") -> None:
    """--label / --condition: the condition of a conditional run (docs/conditional.md)."""
    p.add_argument("--label", metavar="K", help=f"class label(s) of a label-conditional run: K, or a .npy of n "
                   f"labels{where}")
    p.add_argument("--condition", metavar="V1,V2,...", help=f"covariates of a covariate-conditional run, in the "
                   f"data's units: k comma-separated values, or a .npy of shape (n, k){where}")


def _add_report_parsers(sub: argparse._SubParsersAction) -> None:
    """The ``report`` and ``compare`` sub-commands (vaekit.report)."""
    rp = sub.add_parser("report", help="write the run's self-contained HTML report (report.html)")
    rp.add_argument("run", type=Path)
    rp.add_argument("--out", type=Path, help="output file (default: RUN/report.html)")
    rp.add_argument("--seed", type=int, default=0)

    cp = sub.add_parser("compare", help="side-by-side HTML comparison of runs (or train ae,vae,beta-vae:B)",
                        epilog=EPILOG_COMPARE, formatter_class=argparse.RawDescriptionHelpFormatter)
    cp.add_argument("runs", type=Path, nargs="*", metavar="RUN", help="run directories on the same data")
    cp.add_argument("--train", metavar="VARIANTS", help="train these first, e.g. ae,vae,beta-vae:4")
    cp.add_argument("--out", type=Path, help="output HTML (default: next to the runs, or RUNS/NAME/compare.html)")
    cp.add_argument("--k", type=int, default=100, help="importance samples for runs without eval.json (default 100)")
    cp.add_argument("--runs", dest="runs_root", type=Path, default=Path("runs"), help="folder for --train runs")
    cp.add_argument("--name", help="folder name of the --train comparison (default compare-<date>-<time>)")
    cp.add_argument("--config", type=Path, help="TOML config shared by the --train variants")
    cp.add_argument("--no-progress", action="store_true", help="no progress bar while training")


def _reattach_values(extra: Sequence[str], runs: list[str]) -> tuple[list[str], list[str]]:
    """argparse hands the first value after an unknown option (``--model.latent_dim 2``) to the RUN
    positionals; give such values back to their options, in order. Returns (overrides, true runs)."""
    items, out = list(extra), []
    runs = list(runs)
    for i, item in enumerate(items):
        out.append(item)
        takes_value = item.startswith("--") and "=" not in item
        if takes_value and (i + 1 == len(items) or items[i + 1].startswith("--")) and runs:
            out.append(runs.pop(0))
    return out, runs


def _report(args: argparse.Namespace) -> int:
    from vaekit.report import write_report
    from vaekit.threads import ENV_BACKGROUND, register_background

    if os.environ.get(ENV_BACKGROUND) == "1":  # left running by `vaekit train`: give way to the user's next run
        register_background()

    print(f"wrote {write_report(args.run, out=args.out, seed=args.seed)}")
    return 0


def _compare(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from vaekit.errors import VaekitError
    from vaekit.report import train_and_compare, write_comparison

    if args.train is None:
        if extra or args.config or args.name:
            raise VaekitError("config options, --config and --name apply only with --train; drop them or add "
                              "--train ae,vae")
        print(f"wrote {write_comparison(args.runs, out=args.out, k=args.k)}")
        return 0
    extra, leftover = _reattach_values(extra, [str(r) for r in args.runs])
    if leftover:
        raise VaekitError("give either run directories or --train VARIANTS, not both")
    from vaekit.callbacks import ProgressBar
    from vaekit.config import load_config

    base = load_config(args.config) if args.config else None
    path = train_and_compare(args.train, _split_overrides(extra), runs_root=args.runs_root, name=args.name,
                             out=args.out, base_config=base, k=args.k,
                             callbacks_factory=lambda: [ProgressBar(enabled=not args.no_progress)])
    print(f"wrote {path}")
    return 0


def _split_overrides(extra: Sequence[str]) -> dict[str, str]:
    from vaekit.errors import VaekitError

    overrides: dict[str, str] = {}
    items = list(extra)
    i = 0
    while i < len(items):
        flag = items[i]
        if not flag.startswith("--") or "." not in flag:
            raise VaekitError(f"unexpected argument '{flag}'; config overrides look like --train.lr 3e-4")
        key, eq, value = flag[2:].partition("=")
        if not eq:
            if i + 1 >= len(items):
                raise VaekitError(f"option '{flag}' needs a value, e.g. {flag} VALUE")
            value = items[i + 1]
            i += 1
        overrides[key] = value
        i += 1
    return overrides


def _train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    import time

    from vaekit.api import write_artifacts
    from vaekit.callbacks import ProgressBar
    from vaekit.config import Config, apply_overrides, load_config
    from vaekit.errors import VaekitError
    from vaekit.train import continued_config, dist, fit, resume

    # under torchrun every process runs this; rank 0 alone shows progress and writes the report
    progress = ProgressBar(enabled=not args.no_progress and os.environ.get("RANK", "0") == "0")
    finished = False  # trained to the end on this rank: leave torch.distributed at a barrier
    try:
        if args.resume is not None:
            overrides = _split_overrides(extra)
            # where and on how many processes to continue are not part of what is trained
            device = overrides.pop("train.device", None)
            nproc = None if "train.nproc" not in overrides else \
                apply_overrides(Config(), {"train.nproc": overrides.pop("train.nproc")}).train.nproc
            threads = None if "train.threads" not in overrides else \
                apply_overrides(Config(), {"train.threads": overrides.pop("train.threads")}).train.threads
            if overrides or args.config or args.name:
                dropped = " ".join([*(f"--{k}" for k in overrides), *(["--config"] if args.config else []),
                                    *(["--name"] if args.name else [])])
                raise VaekitError(f"--resume continues the run with its saved config; drop {dropped} (edit "
                                  f"{args.resume}/config.toml to change it; only --train.device, --train.nproc "
                                  "and --train.threads may be given)")
            n = nproc if nproc is not None else continued_config(args.resume).train.nproc
            if n > 1 and not dist.launched():  # this process launches the n training processes (torchrun)
                dist.launch(n, args.argv, args.resume)
                return 0
            trainer = resume(args.resume, callbacks=[progress], device=device, nproc=nproc, threads=threads)
            run_dir = Path(args.resume)
        else:
            config = load_config(args.config) if args.config else Config()
            overrides = _split_overrides(extra)
            if args.name:
                overrides["name"] = args.name
            config = apply_overrides(config, overrides)
            if config.train.nproc > 1 and not dist.launched():
                name = config.name or time.strftime("run-%Y%m%d-%H%M%S")  # one name for every process
                dist.launch(config.train.nproc, [*args.argv, *([] if config.name else ["--name", name])],
                            args.runs / name)
                return 0
            run_dir, trainer = fit(config, runs_root=args.runs, callbacks=[progress], notify=_notify)
        finished = True
    finally:
        dist.leave(synchronise=finished)
    if not trainer.group.is_main:
        return 0
    s = trainer.state
    if trainer.resume_note:
        print(trainer.resume_note)
    if s.selected_on == "last":
        chosen = (f"no validation split (data.val_fraction 0): best = last checkpoint (epoch {s.best_epoch + 1}), "
                  "not selected on a validation ELBO")
    elif s.selected_on != "val_elbo":  # a selection such as val_ndcg@100 (vaekit.train.selection)
        chosen = f"best {s.selected_on} {s.best_val_score:.4f} at epoch {s.best_epoch + 1}"
    else:
        chosen = f"best validation ELBO {s.best_val_elbo:.3f} nats at epoch {s.best_epoch + 1}"
    print(f"trained {s.epoch} epochs ({s.step} steps, {s.skipped_steps} skipped); {chosen}")
    if trainer.resumed_at_step == s.step and (run_dir / "report.html").exists():
        print(f"{run_dir} had finished already: nothing trained, no file changed")
        return 0
    print(f"wrote {run_dir}/checkpoints, {run_dir}/metrics.jsonl, {run_dir}/config.toml")
    from vaekit.api import collapse_warning

    if (msg := collapse_warning(run_dir, trainer.data)) is not None:
        print(f"vaekit: warning: {msg}", file=sys.stderr)
    if not args.no_artifacts:
        from vaekit.api import load

        for path in write_artifacts(run_dir, load(run_dir), trainer.data, trainer.config.train.seed):  # in memory
            print(f"wrote {path}")
    if not args.no_report:
        seed = trainer.config.train.seed
        if args.report_now or os.environ.get("VAEKIT_REPORT") == "now":
            from vaekit.report import write_report

            print(f"wrote {write_report(run_dir, seed=seed)}")
        else:
            pid = _report_in_background(run_dir, seed)
            print(f"writing {run_dir}/report.html in the background (pid {pid}; its output goes to "
                  f"{run_dir}/report.log; `vaekit report {run_dir}` writes it again)")
    return 0


_BACKGROUND: list[Any] = []  # reports being written: referenced until this process exits


def _report_in_background(run_dir: Path, seed: int) -> int:
    """Start ``vaekit report RUN`` in its own session (a Ctrl-C of this terminal does not stop it) and return
    its pid. The report is written atomically: a killed writer leaves the previous report.html, or none,
    never half of one. What users wait for is training: the report (0.5-3 s of plotting and probing) is
    written while they read the training summary."""
    import subprocess

    from vaekit.threads import ENV_BACKGROUND

    env = {**os.environ, ENV_BACKGROUND: "1"}  # it registers as background work (vaekit.threads)
    with open(run_dir / "report.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "vaekit", "report", str(run_dir), "--seed", str(seed)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env)
    _BACKGROUND.append(proc)
    return int(proc.pid)


def _notify(kind: str, message: str) -> None:
    """The data loader's decisions go to stdout with the run's other news (``vaekit: note: ...``); its
    warnings to stderr (``vaekit: warning: ...``), where a failing run's one error line also goes."""
    print(f"vaekit: {kind}: {message}", file=sys.stderr if kind == "warning" else sys.stdout)


def _eval(args: argparse.Namespace, extra: Sequence[str]) -> int:
    from vaekit.evaluate import evaluate_run

    result = evaluate_run(args.run, k=args.k, chunk=args.chunk, batch_size=args.batch_size, seed=args.seed,
                          repeats=args.repeats, naive_k=args.naive_k, precision=args.precision,
                          overrides=_split_overrides(extra), device=args.device, out=args.out)
    for note in result.get("notes", []):
        print(f"vaekit: note: {note}", file=sys.stderr)
    for warning in result["warnings"]:
        print(f"vaekit: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        if key in ("warnings", "notes", "ranking"):
            continue
        if isinstance(value, list):
            value = "[" + ", ".join(f"{v:.3f}" for v in value) + "]"
        print(f"{key:>26}: {value:.4f}" if isinstance(value, float) else f"{key:>26}: {value}")
    if result.get("ranking"):
        from vaekit.recsys.harness import format_table

        print("ranking metrics (the same users, fold-in, split and metric code for every row):")
        for line in format_table(result["ranking"]):
            print(f"  {line}")
    print(f"wrote {args.out or Path(result['run']) / 'eval.json'}")
    return 0


def _recommend(args: argparse.Namespace) -> int:
    from vaekit.errors import VaekitError
    from vaekit.recsys.recommend import parse_item_ids, recommender

    if (args.user_items is None) == (args.user is None):
        raise VaekitError("give the user's items with --user-items FILE (one item id per line) or a user of the "
                          "run's data with --user ID (one of the two)")
    model = recommender(args.run)
    if args.user_items is not None:
        try:
            text = Path(args.user_items).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise VaekitError(f"{args.user_items} is not UTF-8 text; give one item id per line") from None
        recs = model.recommend(parse_item_ids(text), k=args.top)
    else:
        recs = model.recommend_user(args.user, k=args.top)
    if args.json:
        print(json.dumps([{"rank": r.rank, "item": r.item, "title": r.title, "log_prob": r.log_prob}
                          for r in recs]))
        return 0
    for r in recs:
        title = f"  {r.title}" if r.title else ""
        print(f"{r.rank:>3}. {r.item!s:>10}  log p {r.log_prob:8.3f}{title}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI. A user-fixable problem prints one line ``vaekit: error: ...`` and returns 2; with
    ``--debug`` the traceback is printed first. Any other exception is a bug and keeps its traceback."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # as given: what `train --train.nproc N` relaunches
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command not in ("train", "eval", "compare") and extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            return _dispatch(args, extra)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print("vaekit: interrupted; the last checkpoint is intact (continue with --resume)", file=sys.stderr)
        return 130
    except Exception as err:
        message = _user_error(err)
        if message is None:
            raise
        if args.debug:
            traceback.print_exc()
        print(f"vaekit: error: {message}", file=sys.stderr)
        return 2


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: object = None, line: str | None = None) -> None:
    """A :class:`~vaekit.errors.VaekitWarning` (e.g. 'best checkpoint ... is missing; using last', inputs
    outside the training range) is printed as one line ``vaekit: warning: ...``, like errors; other
    libraries' warnings keep Python's format."""
    from vaekit.errors import VaekitWarning

    if issubclass(category, VaekitWarning):
        print(f"vaekit: warning: {message}", file=sys.stderr)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)  # type: ignore[arg-type]


def _user_error(err: Exception) -> str | None:
    """The one-line message of a user-fixable error, or None for a bug. File-system errors (a disk
    full, a path that is not a folder, permissions) are the user's to fix too."""
    from vaekit.errors import VaekitError

    if isinstance(err, VaekitError):
        return str(err)
    if isinstance(err, OSError):
        where = f"{err.filename}: " if err.filename else ""
        return " ".join(f"{where}{err.strerror or err}; check that the path exists, is a folder where one "
                        "is expected, is writable and the disk has space".split())
    return None


@contextlib.contextmanager
def _long_lived_imports() -> Iterator[None]:
    """Import torch & co. with the cyclic garbage collector off, then freeze what they made (``gc.freeze``).
    The imports leave about 250,000 long-lived objects and no garbage; left in the collector's oldest
    generation, each full collection later in the command rescans all of them (0.15-0.2 s of a one-epoch run
    on 2 cores, issue #15). Frozen objects are never collected: right for module state that lives as long as
    the process, which is why only the command line does this, never the library."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()


def _dispatch(args: argparse.Namespace, extra: Sequence[str]) -> int:
    with _long_lived_imports():
        from vaekit import api

    if args.command == "train":
        return _train(args, extra)
    if args.command == "eval":
        return _eval(args, extra)
    if args.command == "report":
        return _report(args)
    if args.command == "compare":
        return _compare(args, extra)
    if args.command == "recommend":
        return _recommend(args)
    if args.command == "impute":
        from vaekit.imputation import impute_file

        paths = impute_file(args.run, args.input, args.out, draws=args.draws, k=args.k, seed=args.seed)
        print(f"wrote {', '.join(str(p) for p in paths)}")
        return 0
    if args.command == "explore":
        from vaekit.explore import serve

        serve(args.runs, host=args.host, port=args.port, max_points=args.points, seed=args.seed)
        return 0
    if args.command == "export":
        from vaekit.export import FILES, export_run

        out = export_run(args.run, args.out, format=args.format, force=args.force)
        print(f"wrote {', '.join(str(out / name) for name in FILES)}")
        return 0
    if args.command == "sample":
        path = api.sample(args.run, args.n, args.out, seed=args.seed, mean=not args.draw, label=args.label,
                          c=args.condition)
    elif args.command == "reconstruct":
        path = api.reconstruct(args.run, args.out, n=args.n)
    else:
        path = api.encode(args.run, args.out, input=args.input, split=args.split, sample=args.sample,
                          label=args.label, c=args.condition)
    print(f"wrote {path}")
    return 0


def run() -> None:
    """The ``vaekit`` console command: :func:`main`, then exit without the interpreter's teardown once the
    output is flushed (tearing down torch's and matplotlib's modules takes 0.3-0.6 s of every command on a
    2-core CPU, and nothing of vaekit's is left to finish: files are written and closed by then). A bug's
    exception still propagates with its traceback."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
