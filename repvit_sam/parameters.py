"""What the task parameter dataclasses (``AmgParams``, ``EdgeParams``) share: checks that name
the parameter, and each field's one-line help, from which the command-line options and the
service's request schemas are made."""

from __future__ import annotations

import math
from dataclasses import field, fields
from typing import Any

import numpy as np

from .errors import InvalidInputError


def require(ok: bool, name: str, expected: str, value: object) -> None:
    if not ok:
        raise InvalidInputError(f"{name} must be {expected}, got {value!r}")


def is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:  # an int beyond float's range
        return False


def param(default: Any, help: str) -> Any:
    """A dataclass field with the one-line help that command-line options and request schemas
    show (see ``parameter_help``)."""
    return field(default=default, metadata={"help": help})


def parameter_help(params: type) -> dict[str, str]:
    """Name -> one-line help of a parameters dataclass's fields (``AmgParams``, ``EdgeParams``)."""
    return {f.name: f.metadata["help"] for f in fields(params)}


def parameter_defaults(params: type) -> dict[str, Any]:
    """Name -> default of a parameters dataclass's fields."""
    return {f.name: f.default for f in fields(params)}
