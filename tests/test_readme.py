"""The README's set-up commands are the ones CI proves."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _setup_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)\n```", section, flags=re.S)


def test_readme_has_exactly_two_setup_commands():
    commands = _setup_commands()
    assert len(commands) == 2
    assert all("\n" not in command for command in commands)


def test_ci_runs_the_readme_test_command():
    test_command = _setup_commands()[1]
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
    assert "pytest" in test_command and "torch==2.14.1 torchvision==0.29.1" in test_command


def test_ci_gives_the_tool_tests_their_environments_before_the_test_command():
    """The tests that run Label Studio's and X-AnyLabeling's own code skip without these
    variables; CI must set them (to the venvs .ci/tool-venvs.sh makes) before pytest starts."""
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    test_line = ci_lines.index(_setup_commands()[1])
    before = "\n".join(ci_lines[:test_line])
    assert '.ci/tool-venvs.sh "$tools"' in before
    for variable, path in [
        ("REPVIT_SAM_TEST_LABEL_STUDIO", "label-studio/bin/label-studio"),
        ("REPVIT_SAM_TEST_X_ANYLABELING", "x-anylabeling/bin/python"),
    ]:
        assert f'export {variable}="$tools/{path}"' in before
    script = (ROOT / ".ci" / "tool-venvs.sh").read_text()
    # the versions the tests were written against
    assert '"label-studio==1.23.2"' in script and '"x-anylabeling-cvhub[cpu]==4.2.1"' in script


def test_ci_installs_the_docker_engine_and_debootstrap_before_the_test_command():
    """The docker tests start dockerd and make their stand-in images with debootstrap."""
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    before = "\n".join(ci_lines[: ci_lines.index(_setup_commands()[1])])
    assert "apt-get install -y -qq docker.io debootstrap" in before
