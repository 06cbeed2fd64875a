"""Dataset jobs: embeddings and automatic masks for a whole dataset, in this process or on a Ray
cluster, kept in a persistent embedding store the HTTP service reads.

Layout::

    store.py     EmbeddingStore: embeddings by id in a folder or any fsspec URL, atomic writes
    sources.py   list_images: the images of a folder or a list file
    jobs.py      the workers (Embedder, MaskMaker) and the in-process runner
    ray_jobs.py  the same workers as a Ray Data actor pool
    cli.py       ``repvit-sam embed-dataset`` and ``amg-dataset``
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

__all__ = ["EmbeddingStore", "ModelSpec", "SourceImage", "list_images"]

_EXPORTS = {
    "EmbeddingStore": ".store",
    "ModelSpec": ".jobs",
    "SourceImage": ".sources",
    "list_images": ".sources",
}

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .jobs import ModelSpec
    from .sources import SourceImage, list_images
    from .store import EmbeddingStore
