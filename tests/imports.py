"""Our modules' imports, read from their source (function bodies too): for the tests of the layout
and of the stages' code lists."""

import ast
from pathlib import Path

from tests.conftest import REPO


def source_of(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.exists()), None)


def module_of(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Our modules `path` imports anywhere (function bodies too): `from most.x import y` counts as
    most.x.y where y is a module, else as most.x (its __init__)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.split(".")[0] == "most"}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "most":
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if source_of(submodule) else node.module)
    return found
