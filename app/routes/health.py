"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers call these).

``/readyz`` is 503 until the model is loaded and warmed up, then 200. ``/healthz`` is 200 while
the process runs, including while the model loads, and 503 once the model has failed to load
(for good: the replica needs a restart), with the error in the body. A shared cache that is
down does not make the replica unready (it still answers, from its local cache): the body says
``"cache": "degraded"`` and ``repvit_sam_cache_backend_up`` is 0.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from ..deps import MetricsDep, ServiceDep
from ..errors import NotReadyError
from ..openapi import error_responses
from ..schemas import Health, Readiness

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    response_model=Health,
    responses=error_responses(503),
    summary="The process is alive and its model has not failed to load",
)
async def healthz(service: ServiceDep) -> Health:
    service.check_loaded()
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=error_responses(503),
    summary="The model is loaded and warmed up",
)
async def readyz(service: ServiceDep) -> Readiness:
    service.check_loaded()
    if not service.ready:
        raise NotReadyError("the model is still loading")
    backend = service.cache.stats().backend
    if backend is None:
        return Readiness(status="ok", cache="local")
    return Readiness(status="ok", cache="ok" if backend.up else "degraded")


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {
            "content": {"text/plain": {"example": "repvit_sam_queue_depth 0\n"}},
            "description": "Prometheus text exposition format 0.0.4.",
        }
    },
    summary="Prometheus metrics",
)
async def metrics(service: ServiceDep, registry: MetricsDep) -> PlainTextResponse:
    text = registry.render(service.cache.stats(), service.queue_depth, service.ready)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4; charset=utf-8")
