"""Finds Python that would not run on MicroPython, which pyright's stubs cannot see.

Used by tests/test_static_checks.py on protocol/ and firmware/.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

# Modules that do not exist on the boards (or must not be used there).
FORBIDDEN_MODULES = {
    "dataclasses",
    "typing",
    "typing_extensions",
    "enum",
    "abc",
    "functools",
    "itertools",
    "hmac",
    "secrets",
    "pathlib",
    "decimal",
    "fractions",
    "datetime",
    "threading",
    "logging",
    "subprocess",
    "shutil",
    "tempfile",
    "codecs",
    "unicodedata",
    "cbor2",
    "cryptography",
}


def problems(path: Path, allow_machine: bool = False) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{path}:{getattr(node, 'lineno', 0)}: {what}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [(node.module or "").split(".")[0]] if node.level == 0 else []
        else:
            names = []
        for name in names:
            if name in FORBIDDEN_MODULES:
                report(node, f"imports {name!r}, which MicroPython lacks")
            if name == "machine" and not allow_machine:
                report(node, "imports machine outside firmware/boards/")
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            if any(isinstance(n, ast.NamedExpr) for n in ast.walk(node)):
                report(node, "walrus inside a comprehension")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "hex" and node.args:
                report(node, "bytes.hex(sep) is CPython-only")
        if isinstance(node, ast.Match):
            report(node, "match statement")
    return found


def source_problems(path: Path) -> list[str]:
    """f"{x=}" leaves no trace in the AST (CPython expands it), so look at the text."""
    found = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if re.search(r"""f["'][^"']*\{[^}]*=\}""", line):
            found.append(f"{path}:{lineno}: f-string '=' specifier")
    return found
