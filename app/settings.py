"""Service settings, read from ``REPVIT_SAM_*`` environment variables."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from repvit_sam.assembly import resolve_variant
from repvit_sam.build import resolve_device

MiB = 1 << 20


class Settings(BaseSettings):
    """Configuration of the service; every field is ``REPVIT_SAM_<FIELD>`` in the environment.

    Attributes:
        checkpoint: RepViT-SAM checkpoint; None downloads the official weights on first start.
        variant: Encoder variant of the checkpoint.
        image_size: Encoder input side; None for the standard 1024 (small test models use less).
        device: "cpu", "cuda", "cuda:1", ...
        fuse: Re-parameterise the encoder (same outputs, faster).
        backend: Image encoder runtime: "auto" (default: the fastest exact one installed,
            see ``repvit_sam.backends``), "torch", "onnxruntime" or "openvino".
        precision: Encoder precision: "fp32" (default, exact); "int8" on the CPU, "bf16" on
            CUDA or a CPU with native bf16, "fp16" on CUDA (faster, not exact; see
            ``repvit_sam.quantize``).
        calibration_images: With ``precision="int8"``, a folder of images to calibrate on;
            None for scikit-image's sample photos.
        warmup: Run one embed and one decode before reporting ready.
        cache_bytes: Bytes of embeddings and logits kept in this process (LRU beyond that);
            with ``cache_url`` this is the near cache in front of Redis.
        cache_ttl_seconds: Drop cached items older than this; None keeps them until evicted.
        cache_url: ``redis://host:6379/0`` (or ``rediss://``, ``unix://``) to share embeddings
            and logits between replicas; None keeps them in this process only.
        cache_namespace: Prefix of the service's Redis keys.
        cache_remote_ttl_seconds: Expiry of every key written to Redis (``SET ... EX``).
        cache_remote_max_entry_bytes: Larger values stay in this process only.
        cache_socket_timeout_seconds: Redis connect and answer timeout; a slow or dead Redis
            costs at most this (twice, with one retry) before the local cache answers.
        cache_retry_max_seconds: Longest wait between reconnection attempts.
        cache_check_seconds: Period of the background Redis check (reconnection, memory gauges).
        cache_near_ttl_seconds: With ``cache_url``: the near cache keeps a value at most this
            long (or ``cache_ttl_seconds`` if shorter), then reads it from Redis again. Deletes
            reach the other replicas at once through Redis pub/sub; this bounds how long
            another replica may still answer a deleted id when that channel is down.
        cache_write_queue_bytes: With ``cache_url``: bytes of values waiting to be written to
            Redis at most (the writes run in a background thread); writes beyond are dropped,
            counted (``repvit_sam_cache_write_dropped_total``) and retried at the next check.
        cache_write_wait_seconds: With ``cache_url``: how long a request waits for its Redis
            write before answering (so that another replica sees it at once); not at all
            while an earlier write is overdue (a stalled Redis).
        store_url: A persistent embedding store (a folder or an fsspec URL) filled by
            ``repvit-sam embed-dataset``, read behind the caches: ``/embed`` of an image it holds
            answers ``cached: true`` without the encoder, and its ids serve ``/segment`` on any
            replica. The service never writes or deletes there.
        max_upload_bytes: Largest accepted upload (413 beyond).
        max_pixels: Largest accepted image in pixels, checked before decoding (413 beyond).
        max_points: Most points in one /segment request (422 beyond).
        max_boxes: Most boxes in one /segment request (422 beyond).
        max_output_pixels: Most mask pixels one /segment answer may hold (prompts x candidates
            x image pixels), checked before the decoder runs (413 beyond).
        polygon_tolerance: Douglas-Peucker tolerance in pixels of ``format: "polygons"``
            (OpenCV's ``approxPolyDP``); 0 keeps every boundary pixel.
        max_polygon_points: Most polygon vertices in one /segment answer (413 beyond: ask for
            ``rle``).
        api_key: When set, every model endpoint requires it in the ``X-API-Key`` header.
        cors_origins: Origins allowed by CORS, comma-separated in the environment.
        roboflow_image_url_hosts: Hosts whose images the Roboflow routes may fetch for an
            ``image`` of ``type: "url"`` (exact host names, comma-separated); empty refuses
            every URL, so that a request cannot make the service reach an internal address.
        roboflow_image_url_seconds: Time limit of one such download.
        queue_size: Model calls waiting or running at most; more get 503 with Retry-After.
        max_queue_seconds: Expected seconds of model work queued ahead of a new call at most
            (each kind's moving-average duration); more get 503 with Retry-After the wait.
        max_segment_seconds: Deadline of a /segment decoder call, queue wait included (504).
        max_embed_seconds: Deadline of an encoder call, queue wait included (504).
        max_concurrent_image_decodes: Uploaded images decoded at once; each may take up to
            about 9 bytes per pixel of ``max_pixels`` while decoding.
        max_json_bytes: Largest JSON request body (413 beyond), checked before parsing.
        max_header_bytes: Largest request head (line and headers) ``serve`` reads (h11's
            bound of an incomplete event); beyond it the connection is refused.
        max_connections: Connections and requests ``serve`` handles at once; beyond, 503.
        header_timeout_seconds: How long ``serve`` waits for a request head (line and
            headers) to arrive in full, from the connection's start or the head's first byte;
            then it closes the connection (slow or silent clients, slowloris).
        retry_after_seconds: The Retry-After sent with those 503s.
        max_task_seconds: Time limit of one /masks or /edges task, queue wait included
            (504 beyond).
        max_points_per_side: Largest /masks ``points_per_side`` (422 beyond).
        max_edge_points_per_side: Largest /edges ``points_per_side``; the edge detector keeps
            the logits of every grid mask, so memory grows with its square (422 beyond).
        max_points_per_batch: Largest ``points_per_batch`` of /masks and /edges (422 beyond).
        max_step_points: /masks and /edges decode at most this many grid points per step on
            the model thread, where waiting clicks run in between; a larger
            ``points_per_batch`` is split (the same masks: batching changes no result).
        encoder_parts: The ONNX backends' encoder (OpenVINO's, ONNX Runtime's; fp32, bf16) is
            exported as this many graphs run in turn, and waiting clicks run between them, so
            that a click waits for one part of an image encoding, not for all of it (1: one
            graph, a little faster; the PyTorch backend runs layer by layer anyway).
        host: Address ``repvit-sam serve`` binds.
        port: Port ``repvit-sam serve`` binds.
        shutdown_timeout_seconds: On SIGTERM, how long ``repvit-sam serve`` lets requests in
            flight finish before closing their connections (read by the command, not the app).
        label_studio_url: The Label Studio whose task images the ``/label-studio`` adapter may
            fetch (``http://host:8080``), like the ML backend SDK's ``LABEL_STUDIO_URL``;
            task paths such as ``/data/upload/1/a.png`` are read from it.
        label_studio_api_key: Its access token, sent as ``Authorization: Token ...`` to it
            only, like the SDK's ``LABEL_STUDIO_API_KEY``.
        label_studio_image_hosts: Other ``host`` or ``host:port`` names task image URLs may
            point at (comma-separated; ``*`` allows any host, which lets the service fetch any
            URL a caller names); no token is sent to them.
        label_studio_fetch_seconds: Time limit of one task image download (422 beyond).
    """

    model_config = SettingsConfigDict(env_prefix="REPVIT_SAM_", extra="ignore")

    checkpoint: Path | None = None
    variant: str = "m2_3"
    image_size: int | None = None
    device: str = "cpu"
    fuse: bool = True
    backend: Literal["auto", "torch", "onnxruntime", "openvino"] = "auto"
    precision: Literal["fp32", "bf16", "fp16", "int8"] = "fp32"
    calibration_images: Path | None = None
    warmup: bool = True
    cache_bytes: int = Field(default=1024 * MiB, ge=0)
    cache_ttl_seconds: float | None = Field(default=None, gt=0)
    cache_url: str | None = None
    cache_namespace: str = "repvit-sam"
    cache_remote_ttl_seconds: float | None = Field(default=86400.0, gt=0)
    cache_remote_max_entry_bytes: int = Field(default=64 * MiB, ge=0)
    cache_socket_timeout_seconds: float = Field(default=1.0, gt=0)
    cache_retry_max_seconds: float = Field(default=30.0, gt=0)
    cache_check_seconds: float = Field(default=5.0, gt=0)
    cache_near_ttl_seconds: float = Field(default=60.0, gt=0)
    cache_write_queue_bytes: int = Field(default=256 * MiB, ge=0)
    cache_write_wait_seconds: float = Field(default=0.2, ge=0)
    store_url: str | None = None
    max_upload_bytes: int = Field(default=32 * MiB, gt=0)
    max_pixels: int = Field(default=50_000_000, gt=0)
    max_points: int = Field(default=64, gt=0)
    max_boxes: int = Field(default=64, gt=0)
    max_output_pixels: int = Field(default=1_000_000_000, gt=0)
    polygon_tolerance: float = Field(default=1.0, ge=0)
    max_polygon_points: int = Field(default=200_000, gt=0)
    api_key: SecretStr | None = None
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    roboflow_image_url_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    roboflow_image_url_seconds: float = Field(default=10.0, gt=0)
    queue_size: int = Field(default=64, gt=0)
    max_queue_seconds: float = Field(default=60.0, gt=0)
    max_segment_seconds: float = Field(default=30.0, gt=0)
    max_embed_seconds: float = Field(default=120.0, gt=0)
    max_concurrent_image_decodes: int = Field(default=2, gt=0)
    max_json_bytes: int = Field(default=1 * MiB, gt=0)
    max_header_bytes: int = Field(default=64 << 10, gt=0)
    max_connections: int = Field(default=1000, gt=0)
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    retry_after_seconds: int = Field(default=1, ge=0)
    max_task_seconds: float = Field(default=120.0, gt=0)
    max_points_per_side: int = Field(default=64, gt=0)
    max_edge_points_per_side: int = Field(default=32, gt=0)
    max_points_per_batch: int = Field(default=256, gt=0)
    max_step_points: int = Field(default=4, gt=0)
    encoder_parts: int = Field(default=8, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)
    label_studio_url: str | None = None
    label_studio_api_key: SecretStr | None = None
    label_studio_image_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    label_studio_fetch_seconds: float = Field(default=30.0, gt=0)

    @field_validator("cache_url", mode="before")
    @classmethod
    def _check_cache_url(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            if not value.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError(f"expected redis://, rediss:// or unix:// URL, got {value!r}")
        return value

    @field_validator("variant")
    @classmethod
    def _check_variant(cls, value: str) -> str:
        resolve_variant(value)
        return value

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        # A device this machine lacks fails here, at start, not in the model load behind /readyz.
        resolve_device(value)
        return value

    @field_validator("label_studio_url", mode="before")
    @classmethod
    def _check_label_studio_url(cls, value: object) -> object:
        if isinstance(value, str):
            if not value.strip():
                return None
            if not value.startswith(("http://", "https://")):
                raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @field_validator(
        "cors_origins", "label_studio_image_hosts", "roboflow_image_url_hosts", mode="before"
    )
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value


@functools.lru_cache
def get_settings() -> Settings:
    """The settings of this process, read from the environment once."""
    return Settings()
