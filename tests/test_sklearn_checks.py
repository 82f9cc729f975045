"""scikit-learn's own estimator checks (``parametrize_with_checks``) on vaekit.sklearn.VAE, at tiny settings
so the whole file runs in seconds. No check is skipped or expected to fail: the one check scikit-learn skips
unless SCIPY_ARRAY_API is set before scipy is imported (array-API dispatch with NumPy inputs) runs here in
a subprocess that sets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sklearn.utils.estimator_checks import parametrize_with_checks

from vaekit.sklearn import VAE

#: Tiny settings: every check fits in well under a second.
TINY = {"latent_dim": 2, "hidden": (8,), "epochs": 2, "batch_size": 32, "k": 8, "random_state": 0}
SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run_with_array_api(estimator, check) -> None:
    """``check`` (a partial of check_array_api_input) on ``estimator``'s parameters in a fresh interpreter with
    SCIPY_ARRAY_API=1."""
    params = estimator.get_params()
    code = ("import sys\nfrom sklearn.utils.estimator_checks import check_array_api_input\n"
            "from vaekit.sklearn import VAE\n"
            f"check_array_api_input('VAE', VAE(**{params!r}), **{check.keywords!r})\nprint('passed')\n")
    env = {**os.environ, "SCIPY_ARRAY_API": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "passed", proc.stderr


@parametrize_with_checks([VAE(**TINY), VAE(likelihood="mixed", **TINY)])
def test_sklearn_estimator_check(estimator, check):
    if getattr(getattr(check, "func", None), "__name__", "") == "check_array_api_input":
        _run_with_array_api(estimator, check)
    else:
        check(estimator)
