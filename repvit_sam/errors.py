"""The exceptions raised by repvit_sam.

Every error the library raises on purpose derives from ``RepViTSAMError``::

    RepViTSAMError
    ├── CheckpointError            a checkpoint file cannot be read or does not fit the model
    ├── WeightsDownloadError       fetching or verifying registered weights failed
    ├── InvalidInputError          (also a ValueError) bad image, prompt or argument
    │   └── InvalidImageError      an image that cannot be decoded or has an unusable shape/dtype
    │       └── ImageTooLargeError more pixels than allowed (decompression bomb, ``max_pixels``)
    ├── ImageNotSetError           (also a RuntimeError) predicting before ``set_image``
    ├── PrecisionOverflowError     (also an ArithmeticError) fp16/bf16 gave inf or NaN
    ├── CancelledError             a long task (automatic masks, edges) stopped by its caller
    │   └── DeadlineExceededError  (also a TimeoutError) it did not finish by its deadline
    └── RemoteError                the HTTP service answered with an error; defined by the
                                   torch-free client (repvit_sam_client), tree drawn there

The HTTP service adds its own below these (``repvit_sam_server.errors``, tree drawn there).

Errors of the inputs also derive from ``ValueError`` (or ``TypeError`` for wrong types), so
code written against segment-anything's exceptions keeps working.
"""

from __future__ import annotations


class RepViTSAMError(Exception):
    """Base class of every error raised on purpose by repvit_sam."""


class CheckpointError(RepViTSAMError):
    """A checkpoint is unreadable, of another model, or does not match the requested variant."""


class WeightsDownloadError(RepViTSAMError):
    """Registered weights could not be downloaded or failed verification."""


class InvalidInputError(RepViTSAMError, ValueError):
    """An argument has the wrong shape, range or value; the message names the argument."""


class InvalidImageError(InvalidInputError):
    """An image cannot be decoded, or is not an HxWx3 uint8 RGB image where one is required."""


class ImageNotSetError(RepViTSAMError, RuntimeError):
    """Prediction was requested before an image (or an embedding) was given."""


class PrecisionOverflowError(RepViTSAMError, ArithmeticError):
    """A reduced-precision (fp16/bf16) run produced inf or NaN; fp32 computes it."""


class ImageTooLargeError(InvalidImageError):
    """The image has more pixels than allowed (PIL's decompression-bomb guard or ``max_pixels``)."""


class CancelledError(RepViTSAMError):
    """Generation was cancelled by the caller's ``cancel`` callback."""


class DeadlineExceededError(CancelledError, TimeoutError):
    """Generation did not finish before the caller's ``deadline``."""
