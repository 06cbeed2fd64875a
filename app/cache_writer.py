"""``SharedWriter``: writes to a shared backend from one background thread, off the requests.

A request that stores a value (``TieredCache.put``) hands the write to this thread and waits
for it at most ``wait_seconds``, and not at all while an earlier write is overdue: with Redis
healthy a write lands before the request answers (another replica sees it at once, as the next
click of a user whom a load balancer sends elsewhere needs), and a stalled Redis costs a click
at most ``wait_seconds`` once, instead of the socket timeout on every click.

Memory is bounded: writes wait in a queue of at most ``max_bytes`` of values (the arrays are
mostly shared with the near cache, so this is an upper bound on what the queue adds); a write
that does not fit is dropped and counted, and the caller keeps the value in its near cache.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

logger = logging.getLogger(__name__)


class Sized(Protocol):
    """What the writer needs of a value: its size (``cache.CacheEntry`` has it)."""

    @property
    def nbytes(self) -> int: ...


@dataclass(eq=False)
class PendingWrite:
    """One write handed to the thread; ``done`` is set once the backend answered."""

    key: str
    entry: Sized
    done: threading.Event = field(default_factory=threading.Event)
    shared: bool = False


class SharedWriter:
    """A bounded queue of writes, run in order by one daemon thread.

    Args:
        write: Stores one value in the shared backend, True if it did (``RedisCache.put``,
            which answers False rather than raise when Redis is down).
        max_bytes: Bytes of values queued at most; writes beyond are dropped and counted.
        on_written: Called from the thread as ``on_written(key, shared)`` after each write,
            before waiters are woken.
        clock: Monotonic seconds, replaceable in tests.
    """

    def __init__(
        self,
        write: Callable[[str, Sized], bool],
        max_bytes: int,
        on_written: Callable[[str, bool], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self._write = write
        self.max_bytes = max_bytes
        self._on_written = on_written
        self._clock = clock
        self._queue: deque[PendingWrite] = deque()
        self._bytes = 0
        self._current: PendingWrite | None = None
        self._current_since = 0.0
        self._dropped = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()

    @property
    def dropped(self) -> int:
        """Writes refused since start because the queue was full (or the writer closed)."""
        with self._changed:
            return self._dropped

    @property
    def pending(self) -> int:
        """Writes queued or in progress."""
        with self._changed:
            return len(self._queue) + (self._current is not None)

    def submit(self, key: str, entry: Sized) -> PendingWrite | None:
        """Queues the write (replacing a queued write of ``key``); None when dropped."""
        with self._changed:
            self._unqueue(key)
            if self._closed or self._bytes + entry.nbytes > self.max_bytes:
                self._dropped += 1
                logger.debug("not sharing %s now: the write queue is full", key)
                return None
            write = PendingWrite(key, entry)
            self._queue.append(write)
            self._bytes += entry.nbytes
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="shared-cache-writer", daemon=True
                )
                self._thread.start()
            self._changed.notify_all()
            return write

    def wait(self, write: PendingWrite, seconds: float) -> bool:
        """Waits for ``write`` at most ``seconds``, not at all while the write in progress has
        taken longer than that (a stalled backend); True if it has been shared."""
        with self._changed:
            stalled = self._current is not None and (self._clock() - self._current_since > seconds)
        return write.done.wait(0 if stalled else seconds) and write.shared

    def cancel(self, key: str) -> None:
        """Drops queued writes of ``key`` and waits for one in progress (a delete must not be
        overtaken by an earlier write, which would bring the value back)."""
        with self._changed:
            self._unqueue(key)
            while self._current is not None and self._current.key == key:
                self._changed.wait()

    def close(self, timeout: float) -> None:
        """Finishes the queued writes (waiting at most ``timeout`` seconds); refuses new ones."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("%d shared-cache writes unfinished at close", self.pending)

    def _unqueue(self, key: str) -> None:
        for write in [write for write in self._queue if write.key == key]:
            self._queue.remove(write)
            self._bytes -= write.entry.nbytes
            write.done.set()

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._queue and not self._closed:
                    self._changed.wait()
                if not self._queue:
                    return
                write = self._current = self._queue.popleft()
                self._current_since = self._clock()
                self._bytes -= write.entry.nbytes
            try:
                write.shared = self._write(write.key, write.entry)
                self._on_written(write.key, write.shared)
            except Exception:  # the thread must outlive a bad value (unserialisable meta)
                logger.exception("writing %s to the shared cache failed", write.key)
            finally:
                with self._changed:
                    self._current = None
                    self._changed.notify_all()
                write.done.set()
