"""``ModelScheduler``: the one model thread, with clicks first, deadlines and a graceful drain.

Every model call is a job on one thread, so the model never runs twice at once and the event
loop never blocks on torch. Jobs are served by priority, then in arrival order:

* ``INTERACTIVE``: decoder calls behind a click (``/segment``, the tools' adapters);
* ``BATCH``: encoder calls, automatic masks, edge maps.

A long batch task yields between its steps (each batch of point prompts): its ``cancel``
callback, called by the task at every step, first runs the interactive jobs that arrived
meanwhile. An encoder call yields between the parts of the encoder's layers
(``let_interactive_in``, called from them). A click therefore waits for at most one step of a
long task or one part of an encoder layer, not for the whole call.

Admission is by expected time, not only by count: each kind of job keeps a moving average of
its duration, and a job is refused (``BusyError``: 503 with a ``Retry-After`` of the expected
wait) when the work ahead of it would take longer than ``max_queue_seconds``. Every job has a
deadline; one whose deadline passed, or whose caller went away, is dropped before it runs, and a
running task stops at its next step. ``drain(seconds)`` (on SIGTERM) refuses new jobs and the
queued ones that cannot finish in time, with 503 so that a load balancer retries them elsewhere.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import heapq
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeVar

from repvit_sam import CancelledError, DeadlineExceededError

from .errors import BusyError

logger = logging.getLogger(__name__)

T = TypeVar("T")

# First guesses of each kind's seconds, replaced by measurements as jobs run.
INITIAL_SECONDS = {"decoder": 0.1, "encoder": 3.0, "masks": 30.0, "edges": 30.0}
# Weight of the newest measurement in the moving average.
SMOOTHING = 0.3
# How long past a job's deadline the caller waits for the model thread's own report.
DEADLINE_GRACE_SECONDS = 0.5


class Priority(IntEnum):
    INTERACTIVE = 0
    BATCH = 1


@dataclass(order=True)
class _Job:
    priority: int
    sequence: int
    kind: str = field(compare=False)
    function: Callable[[Callable[[], bool]], Any] = field(compare=False)
    deadline: float = field(compare=False)
    future: concurrent.futures.Future = field(compare=False)
    stop: threading.Event = field(compare=False, default_factory=threading.Event)


class ModelScheduler:
    """Runs model jobs on one thread by priority (see the module docstring).

    Args:
        max_jobs: Jobs waiting or running at most (``QUEUE_SIZE``).
        max_queue_seconds: Expected seconds of work ahead of a new job at most.
    """

    def __init__(self, max_jobs: int, max_queue_seconds: float) -> None:
        self.max_jobs = max_jobs
        self.max_queue_seconds = max_queue_seconds
        self.expected = dict(INITIAL_SECONDS)
        self._heap: list[_Job] = []
        self._running: _Job | None = None
        self._running_since = 0.0
        self._sequence = itertools.count()
        self._lock = threading.Condition()
        self._closed = False
        self._drain_deadline: float | None = None
        self._thread = threading.Thread(target=self._work, name="repvit-sam-model", daemon=True)
        self._thread.start()

    # Submitting (event loop) -------------------------------------------------------------------

    async def run(
        self,
        function: Callable[..., T],
        *args: Any,
        kind: str,
        priority: Priority,
        seconds: float,
        takes_cancel: bool = False,
    ) -> T:
        """``function(*args)`` on the model thread, within ``seconds`` from now.

        Args:
            kind: What the job is, for its expected duration ("decoder", "encoder", ...).
            priority: ``INTERACTIVE`` jobs run before every waiting ``BATCH`` job.
            seconds: The deadline, queue wait included: past it the job is dropped (or a
                task stops at its next step) and this raises ``DeadlineExceededError``.
            takes_cancel: Call ``function(*args, deadline=..., cancel=...)``, a task that checks
                ``cancel()`` between its steps (where interactive jobs get their turn).

        Raises:
            BusyError: Too much work ahead, or the service is draining.
            DeadlineExceededError: The deadline passed first.
        """
        deadline = time.monotonic() + seconds
        if takes_cancel:
            job_function = self._task(function, args, deadline)
        else:
            job_function = lambda stop: function(*args)  # noqa: E731
        future: concurrent.futures.Future = concurrent.futures.Future()
        job = _Job(priority, next(self._sequence), kind, job_function, deadline, future)
        self._admit(job)
        try:
            return await asyncio.wait_for(
                asyncio.wrap_future(job.future), timeout=seconds + DEADLINE_GRACE_SECONDS
            )
        except (TimeoutError, asyncio.TimeoutError) as err:
            raise DeadlineExceededError(
                f"the {kind} call did not finish within {seconds:g} s (queue wait included)"
            ) from err
        finally:
            # The caller left (client disconnected), timed out or got its answer: a job not yet
            # started never runs, a running task stops at its next step.
            job.stop.set()
            job.future.cancel()

    def _task(self, function: Callable[..., T], args: tuple, deadline: float) -> Callable:
        def task(stop: threading.Event) -> T:
            def cancel() -> bool:
                self._run_interactive_jobs()
                return stop.is_set() or self._past_drain()

            return function(*args, deadline=deadline, cancel=cancel)

        return task

    def _admit(self, job: _Job) -> None:
        with self._lock:
            if self._closed or self._drain_deadline is not None:
                raise BusyError("the service is shutting down; retry on another replica", 1)
            if len(self._heap) + (self._running is not None) >= self.max_jobs:
                self._refuse(f"the model queue is full ({self.max_jobs} calls)")
            ahead = self._seconds_ahead(job.priority)
            if ahead > self.max_queue_seconds:
                self._refuse(f"{ahead:.1f} s of model work is queued ahead of this request")
            heapq.heappush(self._heap, job)
            self._lock.notify()

    def _refuse(self, reason: str) -> None:
        wait = self._seconds_ahead(Priority.BATCH)
        raise BusyError(f"{reason}; retry later", max(1, min(60, math.ceil(wait))))

    def _seconds_ahead(self, priority: int) -> float:
        """Expected seconds until a new job of ``priority`` starts (call with the lock held)."""
        ahead = sum(self.expected.get(j.kind, 1.0) for j in self._heap if j.priority <= priority)
        remaining = self._running_remaining()
        # A running batch task lets interactive jobs in at its next step.
        if self._running is not None and self._running.priority > priority:
            remaining = min(remaining, self.expected["decoder"])
        return ahead + remaining

    def _running_remaining(self) -> float:
        """Expected seconds left of the running job (call with the lock held)."""
        if self._running is None:
            return 0.0
        elapsed = time.monotonic() - self._running_since
        return max(0.0, self.expected.get(self._running.kind, 1.0) - elapsed)

    @property
    def depth(self) -> int:
        """Jobs waiting or running."""
        with self._lock:
            return len(self._heap) + (self._running is not None)

    # Draining and closing ----------------------------------------------------------------------

    def drain(self, seconds: float) -> int:
        """Stops admitting jobs and refuses (503) the queued ones that cannot finish within
        ``seconds``; running tasks stop at their first step past it. Returns how many queued
        jobs were refused."""
        refused = []
        with self._lock:
            now = time.monotonic()
            self._drain_deadline = now + seconds
            finish = now + self._running_remaining()
            kept = []
            for job in sorted(self._heap):
                finish += self.expected.get(job.kind, 1.0)
                (kept if finish <= self._drain_deadline else refused).append(job)
            self._heap = kept
            heapq.heapify(self._heap)
        for job in refused:
            job.future.set_exception(
                BusyError("the service is shutting down; retry on another replica", 1)
            )
        logger.info("draining: %d queued model calls refused, %d kept", len(refused), len(kept))
        return len(refused)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending, self._heap = self._heap, []
            self._lock.notify_all()
        for job in pending:
            job.future.cancel()

    def _past_drain(self) -> bool:
        return self._drain_deadline is not None and time.monotonic() > self._drain_deadline

    # The model thread --------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._heap and not self._closed:
                    self._lock.wait()
                if self._closed:
                    return
                job = heapq.heappop(self._heap)
            self._execute(job)

    def let_interactive_in(self) -> None:
        """Runs the interactive jobs waiting now; a batch job calls it on the model thread
        between its steps (an encoder call between its layers)."""
        if threading.current_thread() is not self._thread:
            raise RuntimeError("let_interactive_in is for jobs on the model thread")
        if self._running is not None and self._running.priority == Priority.BATCH:
            self._run_interactive_jobs()

    def _run_interactive_jobs(self) -> None:
        """Runs the waiting interactive jobs now (called by a batch task between its steps)."""
        while True:
            with self._lock:
                if not self._heap or self._heap[0].priority != Priority.INTERACTIVE:
                    return
                job = heapq.heappop(self._heap)
            paused, since = self._running, self._running_since
            self._execute(job)
            with self._lock:
                self._running, self._running_since = paused, since

    def _execute(self, job: _Job) -> None:
        if not job.future.set_running_or_notify_cancel():
            return  # its caller left while it waited
        if job.stop.is_set():
            job.future.set_exception(CancelledError(f"the {job.kind} call was dropped unrun"))
            return
        if time.monotonic() > job.deadline:
            job.future.set_exception(
                DeadlineExceededError(f"the {job.kind} call waited past its deadline")
            )
            return
        if self._past_drain():
            job.future.set_exception(BusyError("the service is shutting down; retry", 1))
            return
        with self._lock:
            self._running, self._running_since = job, time.monotonic()
        started = time.perf_counter()
        result: Any = None
        error: BaseException | None = None
        try:
            result = job.function(job.stop)
        except BaseException as err:  # handed to the caller, whatever it is
            error = err
        seconds = time.perf_counter() - started
        # The queue's state first: a caller woken by its answer sees the job gone.
        with self._lock:
            self._running = None
            old = self.expected.get(job.kind, seconds)
            self.expected[job.kind] = (1 - SMOOTHING) * old + SMOOTHING * seconds
        if error is None:
            job.future.set_result(result)
        else:
            job.future.set_exception(error)
