"""Dataset jobs on a Ray cluster, as Ray Data pipelines: the images listed as a dataset, each
worker an actor that loads the model once and runs the in-process job's step on its share
(read, decode, encode, write to the store), the driver recording results as they stream back.

A worker that dies mid-job is restarted by Ray and its images run again; since every write is
atomic and keyed by content, an image is stored exactly once whichever worker finishes it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ..errors import InvalidInputError
from .jobs import Outcome, Summary
from .sources import SourceImage

logger = logging.getLogger(__name__)

# Failures of a worker process (killed, out of memory) are retried this many times per batch.
MAX_RETRIES = 3


def _ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError as err:
        raise InvalidInputError(
            "--ray needs Ray Data: pip install 'repvit-sam[ray]' (or 'ray[data]')"
        ) from err
    return ray


class _Worker:
    """A Ray actor around one of the in-process workers (``Embedder``, ``MaskMaker``)."""

    def __init__(self, make_worker: Callable[[], Callable[[SourceImage], Outcome]]) -> None:
        self.worker = make_worker()

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        outcomes = [
            self.worker(SourceImage(str(name), path))
            for name, path in zip(batch["name"], batch["path"], strict=True)
        ]
        return {
            "name": [o.name for o in outcomes],
            "key": [o.key for o in outcomes],
            "computed": [o.computed for o in outcomes],
            "error": [o.error for o in outcomes],
        }


def run_on_ray(
    address: str,
    items: list[SourceImage],
    make_worker: Callable[[], Callable[[SourceImage], Outcome]],
    *,
    record: Callable[[dict[str, str]], None] | None = None,
    batch_size: int = 8,
    workers: int | None = None,
    cpus_per_worker: float = 1.0,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Runs the worker that ``make_worker`` builds over ``items`` on the Ray cluster at
    ``address`` (``auto``, or host:port of its head), one actor per worker.

    Args:
        workers: Actors in the pool; by default as many as the cluster's CPUs allow.
        cpus_per_worker: CPUs each actor reserves (its encoder's threads).
    """
    ray = _ray()
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    if workers is None:
        cpus = float(ray.cluster_resources().get("CPU", 1))
        workers = max(1, int(cpus // cpus_per_worker))
    rows = [{"name": item.name, "path": str(item.path)} for item in items]
    dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // batch_size)))
    results = dataset.map_batches(
        _Worker,
        fn_constructor_args=(make_worker,),
        batch_size=batch_size,
        concurrency=workers,
        num_cpus=cpus_per_worker,
        max_task_retries=MAX_RETRIES,
        max_restarts=-1,
    )
    summary, started = Summary(), time.perf_counter()
    for batch in results.iter_batches(batch_size=batch_size, batch_format="numpy"):
        outcomes = [
            Outcome(str(n), str(k), bool(c), str(e))
            for n, k, c, e in zip(
                batch["name"], batch["key"], batch["computed"], batch["error"], strict=True
            )
        ]
        for outcome in outcomes:
            summary.add(outcome)
        if record is not None:
            record({o.name: o.key for o in outcomes if o.key})
        if progress is not None:
            progress(len(outcomes))
    summary.seconds = time.perf_counter() - started
    return summary
