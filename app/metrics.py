"""Counters and histograms rendered in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

from .cache import CacheStats

# Up to 2 minutes: /masks and /edges tasks may run until max_task_seconds (120 s by default).
LATENCY_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0
)  # fmt: skip

Labels = tuple[tuple[str, str], ...]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Labels, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = labels + extra
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value

    def render(self, name: str, labels: Labels) -> list[str]:
        lines, cumulative = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            cumulative += count
            le = "+Inf" if bound == float("inf") else repr(bound)
            lines.append(f"{name}_bucket{_labels(labels, (('le', le),))} {cumulative}")
        lines.append(f"{name}_sum{_labels(labels)} {self.total}")
        lines.append(f"{name}_count{_labels(labels)} {cumulative}")
        return lines


class Metrics:
    """What /metrics reports: requests and latency by route and status, model time, queue.

    Routes need no registration: /masks and /edges appear under their own ``route`` label,
    and their model time under ``stage="masks"`` and ``stage="edges"``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[Labels, int] = defaultdict(int)
        self._latency: dict[Labels, _Histogram] = {}
        self._model: dict[Labels, _Histogram] = {}
        self._rejected = 0
        self._store: dict[str, int] = defaultdict(int)

    def observe_request(
        self, method: str, route: str, status: int, seconds: float, protocol: str | None = None
    ) -> None:
        """One answered request; ``protocol`` labels the routes of a tool's adapter
        (``protocol="label-studio"``), the native routes have none."""
        labels = (("method", method), ("route", route), ("status", str(status)))
        if protocol:
            labels = (("protocol", protocol), *labels)
        with self._lock:
            self._requests[labels] += 1
            self._latency.setdefault(labels, _Histogram(LATENCY_BUCKETS)).observe(seconds)

    def observe_model(self, stage: str, seconds: float) -> None:
        """Time of one model call; ``stage`` is "encoder", "decoder", "masks" or "edges"."""
        with self._lock:
            self._model.setdefault((("stage", stage),), _Histogram(LATENCY_BUCKETS)).observe(
                seconds
            )

    def count_rejected(self) -> None:
        """A model call refused because the queue was full."""
        with self._lock:
            self._rejected += 1

    def count_store_lookup(self, outcome: str) -> None:
        """A cache miss looked up in the persistent store: "hit", "miss" or "error"."""
        with self._lock:
            self._store[outcome] += 1

    def model_calls(self, stage: str) -> int:
        with self._lock:
            histogram = self._model.get((("stage", stage),))
            return 0 if histogram is None else sum(histogram.counts)

    def render(self, cache: CacheStats, queue_depth: int, ready: bool) -> str:
        """The exposition text, with the cache and queue gauges read now."""
        out: list[str] = []

        def header(name: str, kind: str, text: str) -> None:
            out.extend((f"# HELP {name} {text}", f"# TYPE {name} {kind}"))

        with self._lock:
            header("repvit_sam_requests_total", "counter", "HTTP requests by route and status.")
            for labels, count in sorted(self._requests.items()):
                out.append(f"repvit_sam_requests_total{_labels(labels)} {count}")
            header("repvit_sam_request_seconds", "histogram", "HTTP request latency.")
            for labels, histogram in sorted(self._latency.items()):
                out.extend(histogram.render("repvit_sam_request_seconds", labels))
            header("repvit_sam_model_seconds", "histogram", "Model time per call by stage.")
            for labels, histogram in sorted(self._model.items()):
                out.extend(histogram.render("repvit_sam_model_seconds", labels))
            header("repvit_sam_queue_rejected_total", "counter", "Model calls refused (503).")
            out.append(f"repvit_sam_queue_rejected_total {self._rejected}")
            if self._store:
                header(
                    "repvit_sam_store_lookups_total",
                    "counter",
                    "Cache misses looked up in the persistent embedding store, by outcome.",
                )
                for outcome, count in sorted(self._store.items()):
                    out.append(f'repvit_sam_store_lookups_total{{outcome="{outcome}"}} {count}')
        gauges = (
            ("repvit_sam_cache_hits_total", "counter", "Cache lookups that hit.", cache.hits),
            (
                "repvit_sam_cache_misses_total",
                "counter",
                "Cache lookups that missed.",
                cache.misses,
            ),
            ("repvit_sam_cache_evictions_total", "counter", "Entries evicted.", cache.evictions),
            (
                "repvit_sam_cache_corrupt_total",
                "counter",
                "Malformed cached values dropped (answered as misses).",
                cache.corrupt,
            ),
            ("repvit_sam_cache_entries", "gauge", "Entries cached.", cache.entries),
            ("repvit_sam_cache_bytes", "gauge", "Bytes cached.", cache.bytes),
            ("repvit_sam_cache_max_bytes", "gauge", "Cache capacity in bytes.", cache.max_bytes),
            ("repvit_sam_queue_depth", "gauge", "Model calls waiting or running.", queue_depth),
            ("repvit_sam_ready", "gauge", "1 once the model is loaded and warm.", int(ready)),
        )
        for name, kind, text, value in (*gauges, *_backend_gauges(cache)):
            header(name, kind, text)
            out.append(f"{name} {value}")
        return "\n".join(out) + "\n"


def _backend_gauges(cache: CacheStats) -> list[tuple[str, str, str, int]]:
    """The shared cache's series; none without one (the in-process cache only)."""
    backend = cache.backend
    if backend is None:
        return []
    prefix = "repvit_sam_cache_backend"
    gauges = [
        (
            "repvit_sam_cache_write_dropped_total",
            "counter",
            "Shared-cache writes dropped because the write queue was full.",
            cache.writes_dropped,
        ),
        (
            "repvit_sam_cache_invalidations_total",
            "counter",
            "Deletes announced by other replicas.",
            cache.invalidations,
        ),
        (f"{prefix}_up", "gauge", "1 while the shared cache (Redis) answers.", int(backend.up)),
        (f"{prefix}_errors_total", "counter", "Failed shared-cache calls.", backend.errors),
        (f"{prefix}_hits_total", "counter", "Local misses the shared cache had.", backend.hits),
        (f"{prefix}_misses_total", "counter", "Misses in both caches.", backend.misses),
        (
            f"{prefix}_listening",
            "gauge",
            "1 while subscribed to the other replicas' deletes.",
            int(backend.listening),
        ),
    ]
    if backend.used_bytes is not None:
        gauges.append((f"{prefix}_bytes", "gauge", "Memory Redis uses.", backend.used_bytes))
    if backend.max_bytes is not None:
        text = "Redis maxmemory (0: unbounded)."
        gauges.append((f"{prefix}_max_bytes", "gauge", text, backend.max_bytes))
    return gauges
