"""vaekit.memory: importing vaekit keeps glibc from handing the evaluation's large temporaries back to the kernel
after every chunk (measured as page faults of a real estimate in a fresh process), and never overrides a user's
own malloc settings."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from vaekit import memory

ESTIMATE = """
import resource, torch
from vaekit.config import ModelConfig
from vaekit.evaluate import log_likelihood
from vaekit.model import build_model
from vaekit.schema import DataSchema
torch.manual_seed(0)
model = build_model(ModelConfig(latent_dim=20, hidden=(400,)), DataSchema(event_shape=(784,)))
x = (torch.rand(16, 784) < 0.3).float()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
ll = log_likelihood(model, x, 2000, 250, 8, seed=0)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, repr(float(ll.sum())))
"""

glibc = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc only")


def _estimate(**env: str) -> tuple[int, str]:
    clean = {k: v for k, v in os.environ.items() if k not in (memory.ENV_KEEP, *memory.USER_SETTINGS)}
    out = subprocess.run([sys.executable, "-c", ESTIMATE], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    return int(out[0]), out[1]


@glibc
def test_the_estimate_reuses_its_blocks_instead_of_faulting_them_in() -> None:
    faults, estimate = _estimate()
    faults_kept, estimate_kept = _estimate(**{memory.ENV_KEEP: "keep"})  # glibc's own behaviour
    assert estimate == estimate_kept  # the same numbers to the last bit
    assert faults * 3 < faults_kept, (faults, faults_kept)  # about 5,400 against 36,000-45,000 when measured


@glibc
@pytest.mark.parametrize("setting", [memory.ENV_KEEP, *memory.USER_SETTINGS])
def test_a_users_own_choice_is_left_alone(monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    monkeypatch.setenv(setting, "keep" if setting == memory.ENV_KEEP else "131072")
    assert memory.reuse_large_blocks() is False


@glibc
def test_the_limits_are_set_when_the_user_did_not_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (memory.ENV_KEEP, *memory.USER_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    assert memory.reuse_large_blocks() is True  # mallopt accepted both values (it returns 0 for one out of range)
