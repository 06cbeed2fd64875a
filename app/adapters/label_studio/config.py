"""What a Label Studio labelling config says about an image: which task field holds it, and
which BrushLabels and PolygonLabels tags take the masks.

The config is parsed by Label Studio's own parser, ``label_studio_tools``' ``parse_config`` (the
one the ML backend SDK's ``LabelStudioMLBase.parsed_label_config`` uses): each control tag by
name, with its ``type``, ``to_name`` and the object tags it points at.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from label_studio_tools.core.label_config import parse_config
from label_studio_tools.core.utils.exceptions import LabelStudioXMLSyntaxErrorSentryIgnored
from lxml import etree

from repvit_sam import InvalidInputError

# The control tags a SAM mask is written to, by the result type Label Studio reads.
OUTPUT_TAGS = {"BrushLabels": "brushlabels", "PolygonLabels": "polygonlabels"}


@dataclass(frozen=True)
class Output:
    """One control tag of the config that receives masks.

    Attributes:
        from_name: The control tag's ``name``.
        to_name: The Image tag it labels.
        type: ``"brushlabels"`` or ``"polygonlabels"``.
    """

    from_name: str
    to_name: str
    type: str


@dataclass(frozen=True)
class ImageTargets:
    """What the masks of clicks on one Image tag become.

    Attributes:
        image: The Image tag's ``name`` (the ``to_name`` of the clicks).
        data_key: The task ``data`` field holding its URL (``value="$image"`` -> ``image``).
        outputs: The control tags that take the masks, in the config's order.
    """

    image: str
    data_key: str
    outputs: tuple[Output, ...]


def parse_label_config(label_config: str) -> dict[str, dict[str, Any]]:
    """``parse_config(label_config)``; an unreadable config is a 422 naming ``label_config``."""
    try:
        return parse_config(label_config)
    except (
        LabelStudioXMLSyntaxErrorSentryIgnored,
        etree.LxmlError,
        ValueError,
        KeyError,
        AttributeError,
    ) as err:
        raise InvalidInputError(f"label_config is not a valid labelling config: {err}") from None


def image_targets(label_config: str, image: str | None) -> ImageTargets:
    """The targets of the clicks on Image tag ``image`` (the only Image tag when None).

    Raises:
        InvalidInputError: The config has no such Image tag, or no BrushLabels or
            PolygonLabels tag pointing at it.
    """
    parsed = parse_label_config(label_config)
    images = {
        name: item["value"]
        for tag in parsed.values()
        for name, item in zip(tag["to_name"], _inputs(tag), strict=False)
        if item.get("type") == "Image"
    }
    if image is None:
        if len(images) != 1:
            raise InvalidInputError(
                f"label_config has {len(images)} Image tags with controls; the clicks must name "
                "theirs in to_name"
            )
        image = next(iter(images))
    if image not in images:
        raise InvalidInputError(
            f"label_config has no Image tag named {image!r} (the clicks' to_name) with controls"
        )
    outputs = tuple(
        Output(from_name=name, to_name=image, type=OUTPUT_TAGS[tag["type"]])
        for name, tag in parsed.items()
        if tag["type"] in OUTPUT_TAGS and image in tag["to_name"]
    )
    if not outputs:
        raise InvalidInputError(
            f"label_config has no BrushLabels or PolygonLabels tag with toName={image!r}: add "
            f'<BrushLabels name="tag" toName="{image}"> for the masks'
        )
    return ImageTargets(image=image, data_key=images[image], outputs=outputs)


def _inputs(tag: dict[str, Any]) -> list[dict[str, Any]]:
    """The object tags of a control, aligned with its ``to_name`` where all are known."""
    inputs = tag.get("inputs", [])
    return inputs if len(inputs) == len(tag["to_name"]) else []
