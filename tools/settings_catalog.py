"""Which environment variables each function of the template reads, found statically.

A function reads what its handler module and every ``parel_monitoring`` module it can import
(at the top or inside a function, transitively) pass by name to the settings helpers
(``env_str``, ``env_int``, ``env_float``, ``env_choice``, ``env_bool``, ``require_str``, ``secret``).
Used by the tests that keep template.yaml, env.json and the README's Settings table in step with
the code, so a setting cannot exist that an operator has no way to set.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAYER = ROOT / "layers" / "shared"
PACKAGE = "parel_monitoring"
READERS = {"env_str", "env_int", "env_float", "env_choice", "env_bool", "require_str", "secret"}


def _module_path(module: str) -> Path | None:
    base = LAYER.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _imports(tree: ast.AST, module: str) -> set[str]:
    """The ``parel_monitoring`` modules ``tree`` imports (a ``from package import name`` may name a module)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(PACKAGE))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                parts = module.split(".")[: -node.level]
                base = ".".join([*parts, base] if base else parts)
            if not base.startswith(PACKAGE):
                continue
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if _module_path(f"{base}.{alias.name}"))
    # A submodule imports its packages too.
    for name in list(found):
        parts = name.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts)))
    return found


def _reads(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        if called in READERS and isinstance(node.args[0].value, str):
            names.add(node.args[0].value)
    return names


@cache
def _module(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(variables read, modules imported) of one layer module."""
    path = _module_path(module)
    if path is None:
        return frozenset(), frozenset()
    tree = ast.parse(path.read_text())
    return frozenset(_reads(tree)), frozenset(_imports(tree, module))


def modules_imported(handler_file: Path) -> set[str]:
    """Every ``parel_monitoring`` module the function whose handler is ``handler_file`` may import."""
    pending, seen = list(_imports(ast.parse(handler_file.read_text()), "")), set()
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(_module(module)[1])
    return seen


def module_path(module: str) -> Path | None:
    return _module_path(module)


def variables_read(handler_file: Path) -> set[str]:
    """Every variable the function whose handler is ``handler_file`` may read."""
    reads = set(_reads(ast.parse(handler_file.read_text())))
    for module in modules_imported(handler_file):
        reads |= _module(module)[0]
    return reads


def all_variables_read() -> set[str]:
    """What any function of ``functions/`` may read."""
    return set().union(*(variables_read(handler) for handler in (ROOT / "functions").glob("*/app.py")))


if __name__ == "__main__":
    for handler in sorted((ROOT / "functions").glob("*/app.py")):
        print(handler.parent.name, sorted(variables_read(handler)))
