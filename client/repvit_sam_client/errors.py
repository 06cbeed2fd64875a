"""The errors of the client, one class per way a request to the service fails.

All are ``RemoteError``, with ``status_code`` and ``detail``::

    RemoteError
    ├── ConnectError           the service could not be reached (status_code 0)
    ├── AuthenticationError    401: missing or wrong API key
    ├── NotFoundError          404: unknown or evicted embedding or logits id
    ├── PayloadTooLargeError   413: upload or image too large
    ├── ValidationError        400/422: bad image or prompt; ``detail`` names the field
    ├── ServiceBusyError       503: queue full, model loading or shutting down; ``retry_after``
    └── ServerError            other 5xx
        └── TaskTimeoutError   504: a /masks or /edges task ran past the service's time limit

Any other 4xx (e.g. 415, a body of the wrong media type) is a ``RemoteError`` itself.

Where the full ``repvit-sam`` package is installed too, ``RemoteError`` is also a
``repvit_sam.RepViTSAMError``, so one ``except`` catches every error of either. Import them from
``repvit_sam_client`` (or ``repvit_sam.client``, which re-exports them).
"""

from __future__ import annotations

try:
    # Torch-free: repvit_sam's package root and errors module import nothing heavy.
    from repvit_sam.errors import RepViTSAMError as _Base
except ImportError:  # the light distribution alone
    _Base = Exception

__all__ = [
    "AuthenticationError",
    "ConnectError",
    "NotFoundError",
    "PayloadTooLargeError",
    "RemoteError",
    "ServerError",
    "ServiceBusyError",
    "TaskTimeoutError",
    "ValidationError",
]


class RemoteError(_Base):
    """The service answered with an error status, or could not be reached.

    Attributes:
        status_code: The HTTP status (0 when the service could not be reached).
        detail: The ``detail`` field of the JSON error body (or the raw text).
    """

    def __init__(self, status_code: int, detail: object) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


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
