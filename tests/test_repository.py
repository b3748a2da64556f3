"""The repository's own contracts: the README's Layout is the package's tree, constraints/floors.txt is
what setup.cfg declares, and every library the package imports is a declared dependency."""

from __future__ import annotations

import ast
import re
import sys

from tests.test_layers import LAYERS, PACKAGE
from tools import floors

ROOT = PACKAGE.parent
README = ROOT / "README.md"
# import name → distribution, where they differ; opentelemetry is the `otel` extra (imported lazily)
DISTRIBUTION = {"prometheus_client": "prometheus-client", "psycopg_pool": "psycopg-pool", "opentelemetry": "opentelemetry-sdk"}
OPTIONAL: set[str] = set()  # every import is declared: in install_requires or a runtime extra
# Standard library in a newer Python than the oldest we run on (imported behind a version fallback).
NEWER_STDLIB = {"tomllib"}


def layout_block() -> list[str]:
    text = README.read_text()
    section = text[text.index("\n## Layout\n") :]
    block = section[section.index("```\n") + 4 :]
    return block[: block.index("```")].splitlines()


def listed() -> list[tuple[int, str]]:
    """(indent, name) for every entry under `claude_proxy/` in the README's tree."""
    lines = layout_block()
    assert lines[0] == "claude_proxy/"
    entries = []
    for line in lines[1:]:
        match = re.match(r"^( +)(\S+)\s", line + " ")
        if match and len(match[1]) in (2, 4, 6) and (match[2].endswith("/") or match[2].endswith(".py")):
            entries.append((len(match[1]), match[2]))
        elif not line.startswith(" "):
            break  # the next top-level entry (docs/): the package's tree has ended
    return entries


def test_readme_layout_lists_every_subpackage_and_nothing_else() -> None:
    real = {str(p.parent.relative_to(PACKAGE)) + "/" for p in PACKAGE.rglob("__init__.py") if p.parent != PACKAGE}
    shown: set[str] = set()
    parents: dict[int, str] = {}  # indent → the folder open at that depth
    for indent, name in listed():
        for deeper in [i for i in parents if i >= indent]:
            del parents[deeper]
        path = "".join(parents[i] for i in sorted(parents)) + name
        if name.endswith("/"):
            parents[indent] = name
        assert (PACKAGE / path).exists(), f"README's Layout lists {path}, which does not exist"
        if name.endswith("/"):
            shown.add(path)
    assert shown == real, f"missing from README: {sorted(real - shown)}; not in the package: {sorted(shown - real)}"


def test_readme_layout_runs_in_the_layers_order() -> None:
    top = [name.rstrip("/") for indent, name in listed() if indent == 2 and name.endswith("/")]
    assert top == LAYERS


def test_floors_file_is_derived_from_setup_cfg() -> None:
    assert floors.FLOORS.read_text() == floors.render(), "run: python -m tools.floors"


def test_floor_derivation() -> None:
    assert floors.floor_of("urllib3>=2.2,<3") == "urllib3==2.2"
    assert floors.floor_of('tomli>=2.0; python_version < "3.11"') == 'tomli==2.0; python_version < "3.11"'
    for bad in ("flask", "flask<4", "flask>=3,>=3.1"):
        try:
            floors.floor_of(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} has no single floor and must be refused")


def test_every_imported_library_is_a_declared_dependency() -> None:
    declared = {re.split(r"[\[<>=!;\s]", req, maxsplit=1)[0].lower() for req in floors.requirements()}
    imported: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                imported.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                imported.add(node.module.split(".")[0])
    third_party = {name for name in imported if name not in sys.stdlib_module_names} - {"claude_proxy"} - OPTIONAL - NEWER_STDLIB
    undeclared = {name for name in third_party if DISTRIBUTION.get(name, name).lower() not in declared}
    assert not undeclared, f"imported but not in setup.cfg's install_requires or runtime extras: {sorted(undeclared)}"


def test_the_readme_test_command_is_what_ci_runs() -> None:
    command = ".venv/bin/python -m pytest"
    assert f"pip install -e '.[test]' && {command}" in README.read_text()
    assert command in (ROOT / ".ci" / "run").read_text()
