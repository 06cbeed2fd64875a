"""What the distribution ships: every package folder of the repository, under the import names
it claims (``repvit_sam``, ``repvit_sam_client``, ``repvit_sam_server``) and no other."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[1]
IMPORT_NAMES = {"repvit_sam", "repvit_sam_client", "repvit_sam_server"}


def _setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def _package_folders() -> dict[str, Path]:
    """Import name -> folder, for every folder with an ``__init__.py`` under a mapped root."""
    roots = {"repvit_sam": ROOT / "repvit_sam"}
    roots.update(
        {name: ROOT / folder for name, folder in _setuptools_config()["package-dir"].items()}
    )
    found = {}
    for name, root in roots.items():
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found[".".join((name, *parts))] = init.parent
    return found


def test_the_package_list_names_every_package_folder():
    assert sorted(_setuptools_config()["packages"]) == sorted(_package_folders())


def test_the_wheel_claims_only_its_own_import_names(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("repvit_sam-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {
        name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")
    }
    assert top_level == IMPORT_NAMES
    assert "repvit_sam_server/main.py" in names
    assert "repvit_sam_server/static/index.html" in names
    assert not [name for name in names if name.startswith("app/")]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "repvit_sam_server.cli:register" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_torch_requirement_excludes_versions_whose_weights_only_loading_is_bypassable():
    """torch < 2.6 lets a crafted checkpoint run code despite ``weights_only=True``
    (CVE-2025-32434): no requirement of the project admits one."""
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [*project["dependencies"]]
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    pinned = (ROOT / "deploy" / "requirements-torch.txt").read_text().splitlines()
    requirements += [line for line in pinned if line.strip() and not line.startswith("#")]
    torches = [Requirement(text) for text in requirements if Requirement(text).name == "torch"]
    assert torches
    for torch_requirement in torches:
        assert not torch_requirement.specifier.contains("2.5.1", prereleases=True), (
            torch_requirement
        )
