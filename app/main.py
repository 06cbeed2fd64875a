"""``create_app()``: the FastAPI application, its lifespan and middleware."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from repvit_sam import __version__

from .adapters import label_studio, roboflow, x_anylabeling
from .cache import EmbeddingCache, MemoryCache, TieredCache
from .deps import require_api_key
from .errors import install_error_handlers
from .inference import InferenceService
from .metrics import Metrics
from .middleware import BODY_OVERHEAD, CancelOnDisconnectMiddleware, ObserveMiddleware
from .openapi import error_responses, install_openapi
from .routes import demo, docs, embed, embeddings, everything, health, segment
from .settings import Settings, get_settings

logger = logging.getLogger(__name__)


def make_cache(settings: Settings) -> EmbeddingCache:
    """The in-process LRU, in front of Redis when ``cache_url`` is set."""
    if settings.cache_url is None:
        return MemoryCache(settings.cache_bytes, settings.cache_ttl_seconds)
    near_ttl = min(settings.cache_ttl_seconds or math.inf, settings.cache_near_ttl_seconds)
    near = MemoryCache(settings.cache_bytes, near_ttl)
    try:
        from .redis_cache import RedisCache
    except ImportError as err:
        raise RuntimeError(
            "REPVIT_SAM_CACHE_URL is set but the Redis client is missing: "
            "pip install 'repvit-sam[server,redis]'"
        ) from err
    far = RedisCache(
        settings.cache_url,
        namespace=settings.cache_namespace,
        ttl_seconds=settings.cache_remote_ttl_seconds,
        max_entry_bytes=settings.cache_remote_max_entry_bytes,
        socket_timeout=settings.cache_socket_timeout_seconds,
        retry_max_seconds=settings.cache_retry_max_seconds,
    )
    return TieredCache(
        near,
        far,
        write_queue_bytes=settings.cache_write_queue_bytes,
        write_wait_seconds=settings.cache_write_wait_seconds,
    )


async def watch_cache(cache: EmbeddingCache, period: float) -> None:
    """Checks a shared backend every ``period`` seconds (reconnecting it); returns if none."""
    while await asyncio.to_thread(cache.check) is not None:
        await asyncio.sleep(period)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Loads the model in the background (so /healthz answers meanwhile); frees it at the end."""
    service: InferenceService = app.state.service
    app.state.load_task = asyncio.create_task(service.start())
    # The error is recorded on the service and served by /readyz; retrieve it here too.
    app.state.load_task.add_done_callback(lambda t: t.cancelled() or t.exception())
    watcher = asyncio.create_task(
        watch_cache(service.cache, app.state.settings.cache_check_seconds)
    )
    try:
        yield
    finally:
        app.state.load_task.cancel()
        watcher.cancel()
        service.close()
        await asyncio.to_thread(service.cache.close)
        logger.info("service stopped")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Builds the application; the model loads when the app starts, not here.

    Args:
        settings: Defaults to ``get_settings()`` (the ``REPVIT_SAM_*`` environment).
    """
    settings = settings or get_settings()
    metrics = Metrics()
    cache = make_cache(settings)
    app = FastAPI(
        title="RepViT-SAM",
        version=__version__,
        summary="Segment Anything with a RepViT encoder: embed once, segment on every click.",
        lifespan=lifespan,
        # Served by routes/docs.py from installed files: FastAPI's own pages need a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = InferenceService(settings, cache, metrics)

    install_error_handlers(app)
    install_openapi(app)
    # Without a key the model routes are open, and the OpenAPI document says so (no scheme, no 401).
    secured: dict[str, Any] = {}
    if settings.api_key is not None:
        secured = {"dependencies": [Depends(require_api_key)], "responses": error_responses(401)}
    for module in (embed, segment, embeddings, everything):
        app.include_router(module.router, **secured)
    app.include_router(x_anylabeling.router)  # its own key check: the Token header
    app.include_router(roboflow.router)  # its own key check: api_key as Roboflow sends it
    app.include_router(health.router)
    app.include_router(demo.router)
    app.include_router(docs.router)
    app.include_router(label_studio.router)
    # Innermost: a handler whose client went away is cancelled, and its model calls with it.
    app.add_middleware(CancelOnDisconnectMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key"],
        )
    app.add_middleware(
        ObserveMiddleware,
        metrics=metrics,
        max_body_bytes=settings.max_upload_bytes + BODY_OVERHEAD,
    )
    return app
