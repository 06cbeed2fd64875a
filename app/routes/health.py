"""Liveness, readiness and Prometheus metrics (no API key: probes and scrapers call these)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from ..deps import MetricsDep, ServiceDep
from ..errors import NotReadyError
from ..schemas import Health, error_responses

router = APIRouter(tags=["operations"])


@router.get("/healthz", response_model=Health, summary="The process is alive")
async def healthz() -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses=error_responses(503),
    summary="The model is loaded and warmed up",
)
async def readyz(service: ServiceDep) -> Health:
    if not service.ready:
        raise NotReadyError(service.load_error or "the model is still loading")
    return Health(status="ok")


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
