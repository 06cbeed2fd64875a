"""The task parameters have one source, ``AmgParams`` / ``EdgeParams``: the service's request
schemas, the command line's options and the library's keyword defaults all agree with it."""

from __future__ import annotations

import argparse
import inspect
from dataclasses import fields

import pytest

from repvit_sam import EdgeDetector
from repvit_sam.amg_params import AmgParams
from repvit_sam.cli import build_parser
from repvit_sam.cli.tasks import AMG_NOT_OPTIONS
from repvit_sam.edge_params import EdgeParams
from repvit_sam.parameters import parameter_defaults, parameter_help
from repvit_sam_server.schemas import EdgesRequest, MasksRequest

# What the service does not take over HTTP: grids and the memory knob (the service decides).
MASKS_NOT_FIELDS = {"point_grids", "upsample_batch"}
# Fields of the requests that are not task parameters.
REQUEST_ONLY = {"embedding_id", "format"}


def _request_defaults(model) -> dict:
    return {
        name: info.default for name, info in model.model_fields.items() if name not in REQUEST_ONLY
    }


def _subcommand_defaults(name: str) -> dict:
    parser = build_parser()
    (sub,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    command = sub.choices[name]
    return {a.dest: a.default for a in command._actions if a.option_strings and a.dest != "help"}


@pytest.mark.parametrize("params", [AmgParams, EdgeParams])
def test_every_parameter_has_help(params):
    assert set(parameter_help(params)) == {f.name for f in fields(params)}
    assert all(text and text[0].islower() for text in parameter_help(params).values())


def test_the_masks_request_is_amg_params():
    expected = {k: v for k, v in parameter_defaults(AmgParams).items() if k not in MASKS_NOT_FIELDS}
    expected["output_mode"] = "coco_rle"  # the only encoding of masks over HTTP
    assert _request_defaults(MasksRequest) == expected
    for name, help in parameter_help(AmgParams).items():
        if name in MasksRequest.model_fields and name != "output_mode":
            description = MasksRequest.model_fields[name].description
            assert description.lower().startswith(help.lower()), name


def test_the_edges_request_is_edge_params():
    assert _request_defaults(EdgesRequest) == parameter_defaults(EdgeParams)


def test_the_command_line_options_are_the_parameters():
    amg = _subcommand_defaults("amg")
    expected = {k: v for k, v in parameter_defaults(AmgParams).items() if k not in AMG_NOT_OPTIONS}
    assert {k: amg[k] for k in expected} == expected
    assert not set(AMG_NOT_OPTIONS) & set(amg)
    edges = _subcommand_defaults("edges")
    assert {k: edges[k] for k in parameter_defaults(EdgeParams)} == parameter_defaults(EdgeParams)


def test_the_edge_detector_defaults_are_edge_params():
    signature = inspect.signature(EdgeDetector)
    for name, default in parameter_defaults(EdgeParams).items():
        assert signature.parameters[name].default == default, name
