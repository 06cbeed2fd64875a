"""A new user's first run, each in a clean virtual environment with only what it installs.

Slow (minutes: torch is installed into each fresh environment), and run by ``.ci/run``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from service_helpers import encode, make_image

from tests.process_helpers import ServeProcess, free_port
from tests.test_readme import _setup_commands

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _copy_of_the_checkout(target: Path) -> Path:
    """The files a fresh clone has (tracked, and new ones git does not ignore)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, target / name)
    return target


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without the test run's virtual environment or Python path."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    if os.environ.get("VIRTUAL_ENV"):
        venv_bin = str(Path(os.environ["VIRTUAL_ENV"]) / "bin")
        env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if p != venv_bin)
    return {**env, **extra}


def test_the_readme_main_command_alone_gives_a_ready_service(checkpoint, tmp_path):
    """The README's first command verbatim in a fresh copy (its own .venv), but for the bind
    address and port; the checkpoint comes from the environment, as for a user offline."""
    main_command = _setup_commands()[0]
    assert main_command.endswith("repvit-sam serve --host 0.0.0.0 --port 8000")
    port = free_port()
    command = main_command.replace("--host 0.0.0.0 --port 8000", f"--host 127.0.0.1 --port {port}")
    checkout = _copy_of_the_checkout(tmp_path / "clone")
    server = ServeProcess(checkpoint, tmp_path / "first-run.log")
    server.env = _clean_env(**{k: v for k, v in server.env.items() if k.startswith("REPVIT_SAM")})
    # The README's default backend, not the tests' torch.
    server.env.pop("REPVIT_SAM_BACKEND")
    server.env["REPVIT_SAM_PORT"] = str(port)
    server.port = port
    server.start(command=["bash", "-c", command], cwd=checkout)
    try:
        server.wait_ready(timeout=900)  # installs first: torch and the server's extras
        with httpx.Client(base_url=server.base, timeout=60) as http:
            ready = http.get("/readyz").json()
            assert ready["status"] == "ok"
            embedded = http.post("/embed", files={"image": ("a.png", encode(make_image()))})
            assert embedded.status_code == 200, embedded.text
            body = {"embedding_id": embedded.json()["embedding_id"], "points": [[40, 30]]}
            assert http.post("/segment", json=body).status_code == 200
        # The default backend on the CPU is OpenVINO, exported through onnx: both installed.
        assert "encoder backend openvino" in server.output()
    finally:
        server.stop()
        shutil.rmtree(checkout / ".venv", ignore_errors=True)  # several GB: never left behind


def test_the_light_client_works_without_torch(checkpoint, tmp_path):
    """``pip install ./client`` in a clean environment: httpx, numpy and Pillow, no torch; its
    Client embeds and segments against a running service."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = _clean_env()
    installed = subprocess.run(
        [python, "-m", "pip", "install", "-q", str(ROOT / "client")],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    listed = subprocess.run(
        [python, "-m", "pip", "list", "--format=freeze"], env=env, capture_output=True, text=True
    ).stdout.lower()
    assert "torch" not in listed and "repvit-sam-client" in listed
    server = ServeProcess(checkpoint, tmp_path / "serve.log", REPVIT_SAM_API_KEY="k")
    server.start()
    try:
        server.wait_ready()
        script = textwrap.dedent(
            f"""
            import importlib.util, sys
            import numpy as np
            from repvit_sam_client import Client, NotFoundError, RemoteError
            image = np.zeros((60, 80, 3), np.uint8)
            image[10:40, 20:60] = 255
            with Client({server.base!r}, api_key="k") as client:
                embedded = client.embed(image)
                result = client.segment(embedded.embedding_id, boxes=[[20, 10, 60, 40]])
                mask = result.masks[0].decode()
                assert mask.shape == (60, 80) and int(mask.sum()) == result.masks[0].area
                fetched = client.embedding(embedded.embedding_id)
                assert fetched.features.dtype == np.float32 and fetched.original_size == (60, 80)
                try:
                    client.segment("0" * 32, points=[[1, 1]])
                except NotFoundError as err:
                    assert isinstance(err, RemoteError) and err.status_code == 404
                else:
                    raise AssertionError("an unknown id was accepted")
            assert "torch" not in sys.modules and importlib.util.find_spec("torch") is None
            print("ok")
            """
        )
        done = subprocess.run(
            [python, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stdout + done.stderr
    finally:
        server.stop()
