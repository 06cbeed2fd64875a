"""Progress reports, cancellation and time limits for long-running generation.

``MaskGenerator.generate`` and ``EdgeDetector.detect`` take the same three keyword arguments:

* ``progress(done, total)``: called after each unit of work (an image crop embedded, a batch
  of point prompts decoded), ``done`` counting up to ``total``.
* ``deadline``: a ``time.monotonic()`` value after which the work stops with
  ``DeadlineExceededError``.
* ``cancel``: a callable returning True to stop with ``CancelledError`` (for instance the
  ``is_set`` method of a ``threading.Event`` a service sets when the client goes away).

Both errors derive from ``repvit_sam.RepViTSAMError``; ``DeadlineExceededError`` is also a
``TimeoutError``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .errors import CancelledError, DeadlineExceededError, InvalidInputError

__all__ = [
    "CancelCallback",
    "CancelledError",
    "DeadlineExceededError",
    "ProgressCallback",
    "Tracker",
]

ProgressCallback = Callable[[int, int], None]
CancelCallback = Callable[[], bool]


class Tracker:
    """Counts units of work, reports them and stops the work when asked to."""

    def __init__(
        self,
        total: int,
        progress: ProgressCallback | None = None,
        deadline: float | None = None,
        cancel: CancelCallback | None = None,
    ) -> None:
        if progress is not None and not callable(progress):
            raise InvalidInputError("progress must be a callable progress(done, total)")
        if cancel is not None and not callable(cancel):
            raise InvalidInputError("cancel must be a callable returning True to stop")
        if deadline is not None and not isinstance(deadline, (int, float)):
            raise InvalidInputError(
                f"deadline must be a time.monotonic() value in seconds, got {deadline!r}"
            )
        self.total = total
        self.done = 0
        self._progress = progress
        self._deadline = deadline
        self._cancel = cancel
        self.check()

    def check(self) -> None:
        """Raises if the caller cancelled or the deadline passed."""
        if self._cancel is not None and self._cancel():
            raise CancelledError(f"cancelled after {self.done} of {self.total} steps")
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise DeadlineExceededError(f"deadline passed after {self.done} of {self.total} steps")

    def step(self, count: int = 1) -> None:
        """Records finished work, reports it, then checks whether to go on."""
        self.done += count
        if self._progress is not None:
            self._progress(self.done, self.total)
        self.check()
