"""Label Studio's ML backend protocol at ``/label-studio``: interactive SAM predictions from the
labeller's smart keypoints and rectangles, answered as brush (RLE) or polygon regions.

``GET /label-studio/health`` (and ``/``), ``POST /label-studio/setup``, ``/webhook`` and
``/predict`` answer as the label-studio-ml SDK's server does, over the service's one model,
cache and queue.
"""

from .routes import router

__all__ = ["router"]
