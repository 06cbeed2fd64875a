"""The codebase's shape, computed from its source: no import cycles (lazy imports included), no
module over ~400 lines, no function over ~80. The layer contracts are ``lint-imports``'
(pyproject.toml), run by the README's test command."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "repvit_sam": ROOT / "repvit_sam",
    "repvit_sam_client": ROOT / "client" / "repvit_sam_client",
    "repvit_sam_server": ROOT / "app",
}
MAX_MODULE_LINES = 420
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports anywhere in its body, TYPE_CHECKING blocks aside."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    targets: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets.add(base)
            targets.update(f"{base}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    # A submodule import names the deepest project module it reaches.
    resolved = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(target + "."):
            resolved.add(target)
    return resolved


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in graph:
        if node not in index:
            connect(node)
    return components


def test_no_import_cycles():
    modules = _modules()
    # A package's own __init__ (a facade that re-exports) is not a module its parts depend on.
    graph = {
        name: {t for t in _imports(name, path, set(modules)) if not name.startswith(t + ".")}
        for name, path in modules.items()
    }
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(_modules()))
def test_modules_and_functions_stay_small(name):
    path = _modules()[name]
    source = path.read_text()
    assert len(source.splitlines()) <= MAX_MODULE_LINES, f"{path} is over {MAX_MODULE_LINES} lines"
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, (
                f"{path}:{node.lineno} {node.name} is {length} lines"
            )


# Where each package's tests live: the library's modules at the top of tests/, every sub-package
# (and each distribution's package) in a folder of its own.
TEST_FOLDERS = {
    "repvit_sam": "",
    "repvit_sam.cli": "cli",
    "repvit_sam.client": "client",
    "repvit_sam.dataset": "dataset",
    "repvit_sam.distill": "distill",
    "repvit_sam.modeling": "modeling",
    "repvit_sam_client": "client",
    "repvit_sam_server": "app",
    "repvit_sam_server.adapters": "app/adapters",
    "repvit_sam_server.adapters.label_studio": "app/adapters",
    "repvit_sam_server.routes": "app",
}


def test_tests_mirror_the_package_layout():
    packages = sorted(name for name, path in _modules().items() if path.name == "__init__.py")
    assert sorted(TEST_FOLDERS) == packages
    for package, folder in TEST_FOLDERS.items():
        tests = ROOT / "tests" / folder
        assert list(tests.glob("test_*.py")) or list(tests.glob("*/test_*.py")), package
