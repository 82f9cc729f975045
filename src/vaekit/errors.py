"""The one error type users see.

Every problem the user can fix (a bad config key, a missing file, a corrupted checkpoint) raises
:class:`VaekitError` with a one-line message that names the problem and the fix. The CLI prints the
message and exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class VaekitError(Exception):
    """A user-fixable problem. ``str(err)`` is a single line: what is wrong, then how to fix it."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))


class VaekitWarning(UserWarning):
    """Something the user should know but that does not stop the work (inputs outside the training range,
    a collapsed posterior). ``warnings.warn(msg, VaekitWarning)``; the CLI prints ``vaekit: warning: msg``."""
