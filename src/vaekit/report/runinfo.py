"""Everything a report needs from one run directory, read once and defensively.

A run directory holds ``config.toml``, ``metrics.jsonl`` (one JSON object per epoch), ``checkpoints/``
(``meta.json`` with the data provenance under ``"data"``) and optionally ``eval.json``. Missing optional
files give empty values; unreadable required ones raise :class:`~vaekit.errors.VaekitError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vaekit.config import Config
from vaekit.data import DataBundle, Split
from vaekit.data.sparse import SparseSplit
from vaekit.errors import VaekitError
from vaekit.model import VAE


@dataclass
class RunInfo:
    """A loaded run: the model (CPU, eval mode), its config, checkpoint meta, data and logs."""

    run_dir: Path
    model: VAE
    config: Config
    meta: dict[str, Any]
    data: DataBundle
    metrics: list[dict[str, Any]]
    eval: dict[str, Any]
    config_text: str

    @property
    def name(self) -> str:
        return self.config.name or self.run_dir.name

    @property
    def test(self) -> Split | SparseSplit:
        """The held-out split shown in reports: test, else validation."""
        return self.data.test if len(self.data.test) else self.data.val

    @property
    def variant(self) -> str:
        """'AE', 'VAE' or 'beta-VAE (beta=B)' from the config."""
        if not self.model.posterior.has_density:
            return "AE"
        beta = self.config.train.beta
        name = "VAE" if beta == 1.0 else f"beta-VAE (beta={beta:g})"
        condition = self.config.model.condition
        return name if condition == "none" else f"conditional {name} ({condition})"


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The epochs of ``metrics.jsonl``; blank or truncated lines (a run killed mid-write) are skipped."""
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_eval(path: Path) -> dict[str, Any]:
    """``eval.json`` as a dict, or {} when absent or unreadable (the report then says so)."""
    if not path.is_file():
        return {}
    try:
        out = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    return out if isinstance(out, dict) else {}


def load_run_info(path: str | Path) -> RunInfo:
    """Load the run at ``path`` (a run directory or one of its checkpoints)."""
    from vaekit.checkpoint import run_dir_of
    from vaekit.runload import load_run

    run_dir = run_dir_of(path)
    model, config, meta, data = load_run(path)
    model = model.cpu().eval()
    toml_path = run_dir / "config.toml"
    if toml_path.is_file():
        config_text = toml_path.read_text(encoding="utf-8")
    else:
        from vaekit.config import config_to_toml

        config_text = config_to_toml(config)
    if not run_dir.is_dir():
        raise VaekitError(f"{run_dir} is not a run directory; pass runs/<name>")
    return RunInfo(run_dir=run_dir, model=model, config=config, meta=meta, data=data,
                   metrics=read_metrics(run_dir / "metrics.jsonl"), eval=read_eval(run_dir / "eval.json"),
                   config_text=config_text)
