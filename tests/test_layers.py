"""Imports point down the layers (DESIGN.md section 2): checked by parsing every module."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "marketloop"

#: Layer rank: a module may import marketloop packages of equal or lower rank only.
RANK = {
    "simulate": 0,
    "exceptions": 1,
    "config": 1,
    "_validation": 1,
    "data": 2,
    "predict": 3,
    "strategy": 4,
    "execution": 5,
    "feedback": 5,
    "value": 6,
    "governance": 6,
    "assist": 6,
    "demo": 8,
    "cli": 9,
    "__main__": 9,
    "__init__": 9,
}


def _package(path: Path) -> str:
    rel = path.relative_to(SRC).with_suffix("")
    return rel.parts[0]


def _imports(tree: ast.AST) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "marketloop" and len(parts) > 1:
                found.add(parts[1])
    return found


def test_no_module_imports_a_higher_layer() -> None:
    upward = []
    for path in SRC.rglob("*.py"):
        package = _package(path)
        rank = RANK[package]
        for target in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if target not in RANK:
                upward.append(
                    f"{path.relative_to(SRC)} imports unknown package marketloop.{target}"
                )
            elif package == "simulate" and target != "simulate":
                upward.append(
                    f"{path.relative_to(SRC)} imports marketloop.{target}: "
                    "the simulator imports nothing of ours"
                )
            elif RANK[target] > rank:
                upward.append(f"{path.relative_to(SRC)} imports marketloop.{target} (upward)")
    assert not upward, "\n".join(upward)


def test_nothing_imports_the_cli() -> None:
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if _package(path) not in ("cli", "__main__", "__init__")
        and "cli" in _imports(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not offenders
