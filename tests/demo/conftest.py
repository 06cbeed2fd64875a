"""Fixtures of the web demo's browser tests: a Chromium per module, and one ``repvit-sam serve``
of a small random-weight model for the whole session (tests/demo/browser.py has the helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.demo.browser import API_KEY, CHROMIUM_ARGS, find_chromium, open_page
from tests.process_helpers import ServeProcess, save_sharp_test_checkpoint

MAX_PIXELS = 300_000  # the samples fit (coffee is 600x400); a 700x500 upload does not


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random m0_9 model at 256 input with sharpened mask logits, so masks have edges."""
    return save_sharp_test_checkpoint(tmp_path_factory.mktemp("demo") / "random_m0_9.pt")


@pytest.fixture(scope="session")
def server(checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    serve = ServeProcess(
        checkpoint,
        tmp_path_factory.mktemp("serve") / "serve.log",
        REPVIT_SAM_API_KEY=API_KEY,
        REPVIT_SAM_MAX_PIXELS=str(MAX_PIXELS),
    )
    with serve.ready("--host", "127.0.0.1"):
        yield serve.base


# Per module: Playwright's sync API runs an event loop in the test thread while it is open,
# which the async tests of other modules (anyio) cannot share.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="needs Playwright's Python package (pip install -e '.[dev]')"
    )
    executable = find_chromium()
    if executable is None:
        pytest.skip(
            "no Chromium found: install Debian's chromium (apt-get install -y chromium) or set "
            "REPVIT_SAM_CHROMIUM to a Chromium binary"
        )
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Any, server: str) -> Iterator[Any]:
    """The demo page on the session's server, without the API key filled in."""
    with open_page(browser, server) as opened:
        yield opened


@pytest.fixture
def labeller(browser: Any, server: str) -> Iterator[Any]:
    """The demo page with the API key filled in."""
    with open_page(browser, server, API_KEY) as opened:
        yield opened
