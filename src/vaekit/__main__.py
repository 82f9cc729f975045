"""``python -m vaekit`` is the ``vaekit`` command."""

from vaekit.cli import run

run()
