"""Dataset jobs, one image at a time in this process: what ``embed-dataset`` and
``amg-dataset`` run without Ray, and what each Ray worker runs on its share (``ray_jobs``)."""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..embedding_ids import embedding_id, model_fingerprint
from ..errors import RepViTSAMError
from ..image_io import load_image
from .sources import SourceImage
from .store import EmbeddingStore

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ModelSpec:
    """How each worker builds the model (arguments as ``RepViTSAM``'s); ``checkpoint`` must be
    readable where the workers run."""

    checkpoint: str
    variant: str = "m2_3"
    device: str = "cpu"
    fuse: bool = True
    backend: str = "auto"
    image_size: int | None = None
    precision: str = "fp32"
    calibration_images: str | None = None

    def load(self) -> tuple[Any, str]:
        """The ``Predictor`` and its model fingerprint (the service's, for the same settings)."""
        from ..api import load_predictor
        from ..weights import sha256_of

        predictor = load_predictor(
            self.checkpoint,
            variant=self.variant,
            device=self.device,
            fuse=self.fuse,
            image_size=self.image_size,
            backend=self.backend,
            precision=self.precision,
            calibration_images=self.calibration_images,
        )
        fingerprint = model_fingerprint(
            sha256_of(Path(self.checkpoint)),
            self.variant,
            predictor.model.image_encoder.img_size,
            self.fuse,
            predictor.encoder.name,
        )
        return predictor, fingerprint


@dataclass(frozen=True)
class Outcome:
    """What became of one image: its embedding id, whether this run computed its result (not
    found stored or written already), or the error that stopped it."""

    name: str
    key: str = ""
    computed: bool = False
    error: str = ""


@dataclass
class Summary:
    """A job's totals, for its last line."""

    images: int = 0
    computed: int = 0
    failed: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, outcome: Outcome) -> None:
        self.images += 1
        self.computed += outcome.computed
        if outcome.error:
            self.failed.append(outcome)

    def line(self) -> str:
        rate = self.images / self.seconds if self.seconds > 0 else 0.0
        skipped = self.images - self.computed - len(self.failed)
        return (
            f"{self.images} images: {self.computed} computed, {skipped} already done, "
            f"{len(self.failed)} failed, in {self.seconds:.1f} s ({rate:.2f} images/s)"
        )


class Embedder:
    """Encodes the images a store lacks and stores them: one worker's model and store."""

    def __init__(self, spec: ModelSpec, store_url: str) -> None:
        self.predictor, self.fingerprint = spec.load()
        self.store = EmbeddingStore(store_url, self.fingerprint)

    def __call__(self, item: SourceImage) -> Outcome:
        return _guarded(item, self._embed)

    def _embed(self, item: SourceImage) -> Outcome:
        image = load_image(item.path)
        key = embedding_id(self.fingerprint, image)
        if self.store.get(key) is not None:
            return Outcome(item.name, key)
        self.store.put(key, self.predictor.embed(image))
        return Outcome(item.name, key, computed=True)


class MaskMaker:
    """Automatic masks of an image as COCO RLE records, from its stored embedding where the
    store has it (and storing the ones it computes)."""

    def __init__(
        self,
        spec: ModelSpec,
        output: str | os.PathLike[str],
        params: Mapping[str, Any],
        store_url: str | None = None,
    ) -> None:
        from ..amg import MaskGenerator

        self.predictor, self.fingerprint = spec.load()
        self.output = Path(output)
        options = {**params, "output_mode": "coco_rle"}
        self.generator = MaskGenerator(
            self.predictor.model, encoder=self.predictor.encoder, **options
        )
        self.store = EmbeddingStore(store_url, self.fingerprint) if store_url else None
        # Crop layers encode crops of the image: a whole image's embedding is only one of them.
        self.whole_image_only = int(params.get("crop_n_layers", 0)) == 0

    def target(self, item: SourceImage) -> Path:
        return self.output / f"{os.path.splitext(item.name)[0]}.json"

    def __call__(self, item: SourceImage) -> Outcome:
        return _guarded(item, self._generate)

    def _generate(self, item: SourceImage) -> Outcome:
        target = self.target(item)
        if target.is_file():
            return Outcome(item.name)
        image = load_image(item.path)
        key = embedding_id(self.fingerprint, image)
        embedding = self.store.get(key) if self.store is not None else None
        if embedding is None and self.whole_image_only:
            embedding = self.predictor.embed(image)
            if self.store is not None:
                self.store.put(key, embedding)
        records = self.generator.generate(image, embedding=embedding)
        write_atomically(target, json.dumps(records).encode())
        return Outcome(item.name, key, computed=True)


def _guarded(item: SourceImage, work: Callable[[SourceImage], Outcome]) -> Outcome:
    """One image's outcome; an image that cannot be read or computed fails alone."""
    try:
        return work(item)
    except (RepViTSAMError, OSError, ValueError) as err:
        logger.warning("%s failed: %s", item.name, err)
        return Outcome(item.name, error=f"{type(err).__name__}: {err}")


def write_atomically(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        temporary.write_bytes(data)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def run_in_process(
    items: list[SourceImage],
    worker: Callable[[SourceImage], Outcome],
    *,
    record: Callable[[dict[str, str]], None] | None = None,
    batch_size: int = 8,
    progress: Callable[[int], None] | None = None,
) -> Summary:
    """Runs ``worker`` on every image, recording ids after each batch: an interrupted run
    loses at most the batch in flight."""
    summary, started = Summary(), time.perf_counter()
    for batch in batches(items, batch_size):
        outcomes = [worker(item) for item in batch]
        for outcome in outcomes:
            summary.add(outcome)
        if record is not None:
            record({o.name: o.key for o in outcomes if o.key})
        if progress is not None:
            progress(len(batch))
    summary.seconds = time.perf_counter() - started
    return summary
