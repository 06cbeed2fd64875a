"""The errors of ``repvit_sam.client``, one class per way a request to the service fails.

All are ``repvit_sam.errors.RemoteError``, with ``status_code`` and ``detail``::

    RemoteError
    ├── ConnectError           the service could not be reached (status_code 0)
    ├── AuthenticationError    401: missing or wrong API key
    ├── NotFoundError          404: unknown or evicted embedding or logits id
    ├── PayloadTooLargeError   413: upload or image too large
    ├── ValidationError        400/422: bad image or prompt; ``detail`` names the field
    ├── ServiceBusyError       503: queue full or model loading; ``retry_after`` seconds
    └── ServerError            other 5xx
        └── TaskTimeoutError   504: a /masks or /edges task ran past the service's time limit

Import them from ``repvit_sam.client``, which re-exports them.
"""

from __future__ import annotations

from .errors import RemoteError

__all__ = [
    "AuthenticationError",
    "ConnectError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ServerError",
    "ServiceBusyError",
    "TaskTimeoutError",
    "ValidationError",
]


class ConnectError(RemoteError):
    """The service could not be reached."""


class AuthenticationError(RemoteError):
    """401: the API key is missing or wrong."""


class NotFoundError(RemoteError):
    """404: the id is unknown, evicted or deleted."""


class PayloadTooLargeError(RemoteError):
    """413: the upload or image is larger than the service accepts."""


class ValidationError(RemoteError):
    """400/422: the image or prompts were rejected; ``detail`` names the field."""


class ServiceBusyError(RemoteError):
    """503: the queue is full or the model is loading; retry after ``retry_after`` seconds."""

    def __init__(self, status_code: int, detail: object, retry_after: float | None) -> None:
        super().__init__(status_code, detail)
        self.retry_after = retry_after


class ServerError(RemoteError):
    """Any other 5xx."""


class TaskTimeoutError(ServerError):
    """504: the task ran past the service's time limit; ask for less work or raise the limit."""


_BY_STATUS: dict[int, type[RemoteError]] = {
    400: ValidationError,
    401: AuthenticationError,
    404: NotFoundError,
    413: PayloadTooLargeError,
    422: ValidationError,
    504: TaskTimeoutError,
}
