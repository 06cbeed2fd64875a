"""Shared fixtures: small random-weight models, checkpoints written to temp dirs, the reference."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from repvit_sam import build_repvit_sam

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"
# Read by the tests themselves (tests/demo), not by the service.
TEST_VARIABLES = {
    "REPVIT_SAM_CHROMIUM",
    "REPVIT_SAM_TEST_LABEL_STUDIO",
    "REPVIT_SAM_TEST_X_ANYLABELING",
}


def pytest_configure(config: pytest.Config) -> None:
    """The service reads its settings from ``REPVIT_SAM_*`` variables: ones left in this shell
    (an API key or a Redis URL from trying the service) must not reach the tests' apps, nor
    the servers they start with this environment."""
    for name in list(os.environ):
        if name.startswith("REPVIT_SAM_") and name not in TEST_VARIABLES:
            del os.environ[name]


def randomize_batch_norms(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Gives every BatchNorm non-trivial statistics so that fusion is actually exercised."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                shape = module.running_mean.shape
                module.running_mean.copy_(0.1 * torch.randn(shape, generator=generator))
                module.running_var.copy_(torch.rand(shape, generator=generator) + 0.5)
                module.weight.copy_(1 + 0.1 * torch.randn(shape, generator=generator))
                module.bias.copy_(0.02 * torch.randn(shape, generator=generator))
    return model


@pytest.fixture(scope="session", autouse=True)
def isolated_cache_home(tmp_path_factory):
    """Weights and exported encoders go to a fresh folder, never the user's cache: a fresh
    clone's run and a run after others see the same empty cache (servers inherit it)."""
    patch = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("repvit_sam_home")
    patch.setenv("REPVIT_SAM_HOME", str(home))
    yield home
    patch.undo()


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    if not (REFERENCE_DIR / "checkpoint_keys.json").is_file():
        pytest.skip(f"reference data not found at {REFERENCE_DIR} (../shared/reference)")
    return REFERENCE_DIR


@pytest.fixture(scope="session")
def official_keys(reference_dir: Path) -> list[tuple[str, list[int], str]]:
    return [
        tuple(k) for k in json.loads((reference_dir / "checkpoint_keys.json").read_text())["keys"]
    ]


@pytest.fixture(scope="session")
def small_model():
    """An m0_9 model at 256x256 input with randomised BatchNorms: fast and non-trivial."""
    torch.manual_seed(0)
    return randomize_batch_norms(build_repvit_sam(variant="m0_9", image_size=256))


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory, small_model) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "small.pt"
    torch.save(small_model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def official_layout_checkpoint(tmp_path_factory, official_keys) -> Path:
    """Random tensors with exactly the official repvit_sam.pt key layout, saved with torch.save."""
    generator = torch.Generator().manual_seed(0)
    state_dict = {}
    for key, shape, dtype in official_keys:
        if dtype == "int64":
            state_dict[key] = torch.zeros(shape, dtype=torch.int64)
        elif key.endswith("running_var"):
            state_dict[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state_dict[key] = 0.05 * torch.randn(shape, generator=generator)
    path = tmp_path_factory.mktemp("official") / "repvit_sam.pt"
    torch.save(state_dict, path)
    return path


@pytest.fixture
def rgb_image() -> np.ndarray:
    """A 120x160 RGB image with a bright square on a gradient."""
    y, x = np.mgrid[0:120, 0:160]
    image = np.stack([x * 1.5, y * 2.0, (x + y) * 0.8], axis=-1).astype(np.uint8)
    image[30:80, 50:110] = (250, 240, 30)
    return image
