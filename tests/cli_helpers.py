"""Running the real ``vaekit`` command in a subprocess, shared by the CLI-level tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_vaekit(*args: str, cwd: Path | None = None, check: bool = False, env: dict[str, str] | None = None,
               timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """``python -m vaekit ARGS`` in ``cwd``; with ``check``, a non-zero exit fails with its stderr."""
    proc = subprocess.run([sys.executable, "-m", "vaekit", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"vaekit {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc
