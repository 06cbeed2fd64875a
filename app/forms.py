"""The multipart forms of the HTTP API, as named schemas of the OpenAPI document.

``/embed`` takes ``EmbedForm`` (FastAPI parses it). ``/segment``, ``/masks`` and ``/edges`` take
their JSON body or, for one-shot use, a form with the ``image`` and that JSON (without
``embedding_id``) in ``request``; ``bodies.read_body`` reads those forms, and the models below
describe them at /docs.
"""

from __future__ import annotations

from fastapi import UploadFile
from pydantic import BaseModel, Field

IMAGE_DESCRIPTION = "JPEG, PNG, WebP, TIFF or BMP; EXIF orientation is applied."
_JSON_PART = {"contentMediaType": "application/json"}


class ImageForm(BaseModel):
    """An uploaded image."""

    image: UploadFile = Field(description=IMAGE_DESCRIPTION)


class EmbedForm(ImageForm):
    """The upload of ``POST /embed``."""


class SegmentForm(ImageForm):
    """``POST /segment`` with the image uploaded: prompts in ``request``."""

    request: str = Field(
        default="{}",
        description="SegmentRequest as JSON, without embedding_id.",
        examples=['{"points": [[320, 240]], "labels": [1]}'],
        json_schema_extra=_JSON_PART,
    )


class MasksForm(ImageForm):
    """``POST /masks`` with the image uploaded (needed for ``crop_n_layers`` > 0)."""

    request: str = Field(
        default="{}",
        description="MasksRequest as JSON, without embedding_id.",
        examples=['{"points_per_side": 16}'],
        json_schema_extra=_JSON_PART,
    )


class EdgesForm(ImageForm):
    """``POST /edges`` with the image uploaded."""

    request: str = Field(
        default="{}",
        description="EdgesRequest as JSON, without embedding_id.",
        examples=['{"points_per_side": 16, "format": "npy"}'],
        json_schema_extra=_JSON_PART,
    )
