"""Shared fixtures.

``vaekit train`` writes report.html in a background process by default; the suite's CLI runs write it
before returning (VAEKIT_REPORT=now), so a test reads a finished report and no report process outlives
its test. tests/test_report.py covers the background path itself.
"""

from __future__ import annotations

import os

import pytest
import torch
from tiny_runs import tiny_config

from vaekit.data import DataBundle, load_data

os.environ["VAEKIT_REPORT"] = "now"


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory: pytest.TempPathFactory):
    """The user cache of this session (vaekit.data.decoded's entries, downloads), never the user's own; a test
    that needs its own sets XDG_CACHE_HOME itself."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("user-cache")))
        yield


@pytest.fixture
def float64():
    """Run a test with float64 as torch's default dtype (exact-likelihood checks), then restore it."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="module")
def digits() -> DataBundle:
    """The bundled digits as the tiny runs load them (Bernoulli, dynamic binarisation), once per module."""
    return load_data(tiny_config().data, "bernoulli")
