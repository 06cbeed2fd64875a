"""The bodies of Label Studio's ML backend protocol, as its SDK's server (``label_studio_ml/
api.py``) reads and answers them. Fields this adapter does not use are accepted and ignored,
as the SDK does; coordinates are percents of ``original_width`` / ``original_height``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Task(_Open):
    """A task: its ``data`` maps the config's ``$fields`` to values (the image URL)."""

    id: int | str | None = None
    data: dict[str, Any]


class ContextItem(_Open):
    """A region the labeller drew with a smart tool: a click (``keypointlabels``, positive
    unless ``is_positive`` is false) or a box (``rectanglelabels``)."""

    type: str
    to_name: str | None = None
    original_width: int = Field(gt=0)
    original_height: int = Field(gt=0)
    value: dict[str, Any]
    is_positive: bool = False


class Context(_Open):
    result: list[ContextItem] = Field(default_factory=list)


class PredictParams(_Open):
    context: Context | None = None


class PredictRequest(_Open):
    """``POST /predict``: what Label Studio's ``MLApi.make_predictions`` sends."""

    tasks: list[Task] = Field(min_length=1)
    label_config: str
    params: PredictParams = Field(default_factory=PredictParams)


class SetupRequest(_Open):
    """``POST /setup``: the project and its labelling config (``schema``)."""

    project: str | int | None = None
    label_schema: str | None = Field(default=None, alias="schema")


class WebhookRequest(_Open):
    """``POST /webhook``: a Label Studio event (``ANNOTATION_CREATED``, ``START_TRAINING``...)."""

    action: str


class BrushValue(BaseModel):
    format: Literal["rle"] = "rle"
    rle: list[int]
    brushlabels: list[str]


class PolygonValue(BaseModel):
    points: list[list[float]]
    closed: bool = True
    polygonlabels: list[str]


class Region(BaseModel):
    """One region of a prediction, as Label Studio stores it."""

    id: str
    from_name: str
    to_name: str
    original_width: int
    original_height: int
    image_rotation: int = 0
    type: Literal["brushlabels", "polygonlabels"]
    value: BrushValue | PolygonValue
    score: float
    readonly: bool = False


class Prediction(BaseModel):
    """The SDK's ``PredictionValue``: a task's regions, their mean score and the model."""

    model_config = ConfigDict(protected_namespaces=())

    result: list[Region]
    score: float
    model_version: str


class PredictResponse(BaseModel):
    results: list[Prediction]


class HealthResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    status: Literal["UP"] = "UP"
    model_class: str


class SetupResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_version: str


class WebhookResponse(BaseModel):
    status: str
    result: dict[str, Any] | None = None


class ErrorResponse(BaseModel):
    """The SDK server's error answer (``label_studio_ml.exceptions.answer``)."""

    status: int
    detail: str
    request: dict[str, str] = Field(default_factory=dict)
