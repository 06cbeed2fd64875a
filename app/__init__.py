"""The RepViT-SAM HTTP service (import name ``repvit_sam_server``; its folder in the repository is
app/): ``create_app()`` builds the FastAPI application.

Layout::

    settings.py   Settings from REPVIT_SAM_* environment variables
    inference.py  InferenceService: owns the model, its executor, the queue, single-flight and
                  the time limit of long tasks (automatic masks, edge maps)
    cache.py      EmbeddingCache interface, the in-process MemoryCache (bytes-bounded LRU) and
                  TieredCache (that LRU as a near cache in front of a shared backend)
    redis_cache.py  RedisCache: the shared backend of several replicas; never raises
    cache_codec.py  cache values as bytes (JSON header + raw float32), no pickle
    store.py      EmbeddingStore: typed, fingerprint-checked access to the cache
    bodies.py     request bodies: JSON against an embedding_id, or multipart with the image
    encoding.py   masks as COCO RLE, base64 PNG or polygons
    schemas.py    request and response models (with the OpenAPI examples)
    errors.py     the only place that maps exceptions to HTTP statuses
    metrics.py    Prometheus text exposition
    routes/       one router per concern
    cli.py        ``repvit-sam serve``: settings and prerequisites checked, then uvicorn
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from repvit_sam.lazy import lazy_exports

__all__ = ["Settings", "create_app", "get_settings"]

# Imported on first use: ``repvit-sam --help`` loads the service's cli.py without FastAPI or torch.
_EXPORTS = {"create_app": ".main", "Settings": ".settings", "get_settings": ".settings"}


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


if TYPE_CHECKING:
    from .main import create_app
    from .settings import Settings, get_settings
