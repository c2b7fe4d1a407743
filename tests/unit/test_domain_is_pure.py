"""The hexagon's core imports nothing but the standard library and itself."""

import ast
import pathlib
import sys

DOMAIN = pathlib.Path(__file__).resolve().parents[2] / "src" / "stevedore" / "domain"


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_domain_imports_only_the_standard_library():
    offenders = []
    files = sorted(DOMAIN.glob("*.py"))
    assert files, "no domain modules found"
    for path in files:
        for module in imported_modules(path):
            top = module.split(".")[0]
            if module.startswith("stevedore.domain") or top in sys.stdlib_module_names or top == "__future__":
                continue
            offenders.append(f"{path.name}: {module}")
    assert offenders == []
