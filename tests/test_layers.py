"""The package's folders are its architecture: imports only run downwards (README, "Layout").

Layers, top to bottom: cli → server → web → pipeline → search → teams → upstream → config → routing → translate.
`errors` and `_poll` are shared leaves (they may use `translate` only); `upstream/fastpath` is
reached only from inside `upstream/`; `translate` imports nothing of the package and no
third-party library but orjson. The root shims (`worker`, `metrics`) and `__init__`/`__main__`
are the public import paths and sit outside the layers.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "claude_proxy"
LAYERS = ["cli", "server", "web", "pipeline", "search", "teams", "upstream", "config", "routing", "translate"]
LEAVES = {"errors", "_poll"}
ROOT_PUBLIC = {"__init__", "__main__", "worker", "metrics"}
TRANSLATE_THIRD_PARTY = {"orjson"}


def _unit(module: str) -> str:
    """The layer (or leaf) a dotted module of the package belongs to."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) for every import in a file, relative ones made absolute."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    else:
        parts = parts[:-1]  # the module's package
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = parts[: len(parts) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module, [a.name for a in node.names]))
    return found


def _files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _violations(path: Path, source: str | None = None) -> list[str]:
    rel = path.relative_to(PACKAGE.parent)
    here = ".".join(rel.with_suffix("").parts)
    unit = _unit(here)
    bad = []
    for line, module, names in _imports(path, source):
        where = f"{rel}:{line} imports {module}"
        top = module.split(".")[0]
        if unit == "translate":
            if top == "claude_proxy" and _unit(module) != "translate":
                bad.append(where + " (translate imports nothing of the package)")
            elif top not in sys.stdlib_module_names and top not in TRANSLATE_THIRD_PARTY and top != "claude_proxy":
                bad.append(where + " (translate is pure: stdlib and orjson only)")
            continue
        if top != "claude_proxy" or unit in ROOT_PUBLIC:
            continue
        target = _unit(module)
        if target == "__init__":
            if set(names) - {"__version__"}:
                bad.append(where + f" {names} (only __version__ may come from the package root)")
            continue
        if ".fastpath" in module and not here.startswith("claude_proxy.upstream."):
            bad.append(where + " (the fast path is reached only through upstream/)")
        if target in ROOT_PUBLIC:
            bad.append(where + " (the root shims are for outside callers only)")
            continue
        if unit in LEAVES:
            if target not in ("translate", unit):
                bad.append(where + " (a leaf may use translate only)")
            continue
        if target in LEAVES or target == unit:
            continue
        if target not in LAYERS or unit not in LAYERS:
            bad.append(where + f" (unknown unit {target!r}: add it to LAYERS)")
        elif LAYERS.index(target) < LAYERS.index(unit):
            bad.append(where + f" (upward: {unit} → {target})")
    return bad


def test_every_module_belongs_to_a_layer_a_leaf_or_the_public_root() -> None:
    units = {_unit(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in _files()}
    assert units <= set(LAYERS) | LEAVES | ROOT_PUBLIC, units - set(LAYERS) - LEAVES - ROOT_PUBLIC


def test_imports_only_run_downwards() -> None:
    bad = [v for path in _files() for v in _violations(path)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from claude_proxy.cli.main import PROG\n", "upward: pipeline → cli"),
        ("from claude_proxy.upstream.fastpath.framing import decoder_for\n", "fast path"),
        ("from claude_proxy import create_app\n", "only __version__"),
    ],
)
def test_the_checker_catches_a_wrong_arrow(source: str, expected: str) -> None:
    probe = PACKAGE / "pipeline" / "_layer_probe.py"  # never written: the source is passed in
    assert any(expected in v for v in _violations(probe, source))


def test_translate_may_not_reach_for_a_third_party_library() -> None:
    probe = PACKAGE / "translate" / "_probe.py"
    assert _violations(probe, "import requests\n")
    assert not _violations(probe, "import json\nimport orjson\n")
