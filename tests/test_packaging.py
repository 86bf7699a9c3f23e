"""Every module imports on this Python; a missing extra is a one-line hint naming its pip install."""

from __future__ import annotations

import ast
import configparser
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import derain
import rainsynth
from rainsynth.compat import EXTRAS, require
from rainsynth.errors import MissingExtraError

ROOT = Path(__file__).resolve().parents[1]


def modules() -> list[str]:
    names = []
    for package in (rainsynth, derain):
        prefix = package.__name__ + "."
        names += [m.name for m in pkgutil.walk_packages(package.__path__, prefix)]
    return sorted(names)


@pytest.mark.parametrize("name", modules())
def test_every_module_imports(name):
    importlib.import_module(name)


def run_without(modules: list[str], code: str, *args: str, cwd: Path | None = None):
    """Run `code` in a new Python where importing any of `modules` fails as if not installed."""
    block = "; ".join(f"sys.modules[{m!r}] = None" for m in modules)
    return subprocess.run(
        [sys.executable, "-c", f"import sys; {block}; {code}", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd,
    )  # fmt: skip


@pytest.mark.parametrize("command", ["train", "test", "derain"])
def test_torch_commands_without_torch_print_the_extra_to_install(command):
    done = run_without(["torch"], "from rainsynth.cli import main; main()", command, "--help")
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "torch is not installed; run: pip install 'rainsynth[derain]'" in lines[0]


def test_require_names_the_extra_or_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'rainsynth\[dask\]'"):
        require("distributed")
    with pytest.raises(ImportError, match="pip install no_such_module_xyz"):
        require("no_such_module_xyz")
    assert require("json") is sys.modules["json"]


def test_extras_cover_the_optional_modules():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = config["options.extras_require"]
    core = config["options"]["install_requires"]
    for module, extra in EXTRAS.items():
        package = {"distributed": "dask[distributed]"}.get(module, module)
        assert package in extras[extra] and package not in core
    assert "rainsynth[derain,dask,card]" in extras["all"] and "rainsynth[all]" in extras["dev"]


@pytest.mark.slow
def test_build_without_matplotlib_writes_the_card_without_histograms(tmp_path):
    code = (
        "from rainsynth.cli import main; main(['build', '--count', '1', '--split', '1/0', "
        f"'--frames', '2', '--size', '32x48', '--presets', 'light', '-q', '--out', '{tmp_path}'])"
    )
    done = run_without(["matplotlib", "torch"], code)
    assert done.returncode == 0, done.stderr
    card = (tmp_path / "README.md").read_text()
    assert "pip install 'rainsynth[card]'" in card and "parameters.png" not in card
    assert (tmp_path / "preview.png").exists() and not (tmp_path / "parameters.png").exists()


def test_package_data_ships_every_data_file():
    """`pip install .` ships a package's non-Python files only when setup.cfg's package_data
    names them: the presets and the dataset browser's page."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = config["options.package_data"]["rainsynth"].replace(",", " ").split()
    package = ROOT / "rainsynth"
    files = [
        path.relative_to(package)
        for path in package.rglob("*")
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts
    ]
    assert any(path.name == "browser.html" for path in files)
    for path in files:
        assert any(path.match(pattern) for pattern in patterns), f"{path} is not package data"


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (anywhere in its file), read from the source:
    ``from a.b import c`` counts as a.b.c when that is a module (a.b has then started already,
    as Python imports a submodule), else as a.b."""
    names = set(modules()) | {"rainsynth", "derain"}
    graph = {}
    for name in names:
        module = importlib.util.find_spec(name)
        tree = ast.parse(Path(module.origin).read_text("utf-8"))
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{alias.name}" for alias in node.names]
                targets = [t if t in names else node.module for t in targets]
            else:
                continue
            edges |= {t for t in targets if t in names and t != name}
        graph[name] = edges
    return graph


def test_no_import_cycle_between_project_modules():
    graph = import_graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name) :] + [name]))
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_derain_imports_run_one_way():
    """runtime <- inference <- evaluate <- train: no module imports one to its right."""
    graph = import_graph()
    order = ["derain.runtime", "derain.inference", "derain.evaluate", "derain.train"]
    for i, name in enumerate(order):
        assert not graph[name] & set(order[i + 1 :]), name


@pytest.mark.parametrize("name", ["rainsynth.build", "derain.train", "derain.evaluate"])
def test_a_module_imports_alone_in_a_fresh_interpreter(name):
    subprocess.run([sys.executable, "-c", f"import {name}"], check=True, cwd=ROOT)
