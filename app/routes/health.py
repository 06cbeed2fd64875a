"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers call these).

``/readyz`` is 503 until the model is loaded and warmed up, then 200. A shared cache that is
down does not make the replica unready (it still answers, from its local cache): the body says
``"cache": "degraded"`` and ``repvit_sam_cache_backend_up`` is 0.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from ..deps import MetricsDep, ServiceDep
from ..errors import NotReadyError
from ..schemas import Health, Readiness, error_responses

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses=error_responses(503),
    summary="The model is loaded and warmed up",
)
async def readyz(service: ServiceDep) -> Readiness:
    if not service.ready:
        raise NotReadyError(service.load_error or "the model is still loading")
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
