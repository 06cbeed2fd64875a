"""Drives X-AnyLabeling's own ``RemoteServer`` client against a running service.

Run by test_x_anylabeling_client.py with the python of a virtual environment that holds the
``x-anylabeling-cvhub`` package (never imported by the test suite itself):

    python x_anylabeling_client.py SERVER_URL API_KEY IMAGE_PATH X Y

It selects the service's model as X-AnyLabeling does (``get_available_models``,
``set_model_id``), clicks once (``set_auto_labeling_marks``) and prints, as JSON, the models,
the shapes ``predict_shapes`` made of the answer, and the messages it showed the user.
"""

from __future__ import annotations

import json
import sys
from unittest.mock import Mock, patch

from anylabeling.services.auto_labeling.remote_server import RemoteServer


def main() -> None:
    server_url, api_key, image_path, x, y = sys.argv[1:6]
    settings = {"remote_server_settings": {"server_url": server_url, "api_key": api_key}}
    messages = Mock()
    # X-AnyLabeling reads its user settings from ~/.xanylabelingrc; its own tests patch this.
    with patch("anylabeling.services.auto_labeling.model.get_config", return_value=settings):
        config = {"type": "remote_server", "display_name": "Remote-Server", "timeout": 120}
        model = RemoteServer(config, messages)
    models = model.get_available_models()
    model.set_model_id("repvit_sam")
    model.set_mask_fineness(0.001)
    model.set_auto_labeling_marks([{"type": "point", "data": [int(x), int(y)], "label": 1}])
    result = model.predict_shapes(object(), image_path)
    shapes = [
        {
            "label": shape.label,
            "shape_type": shape.shape_type,
            "points": [[point.x(), point.y()] for point in shape.points],
            "score": shape.score,
        }
        for shape in result.shapes
    ]
    shown = [str(call.args[0]) for call in messages.call_args_list]
    print(json.dumps({"models": models, "shapes": shapes, "messages": shown}))


if __name__ == "__main__":
    main()
