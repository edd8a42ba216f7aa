"""A stage's code list (its code digest, its DVC deps) covers every module of ours it imports."""

import ast
from pathlib import Path

import pytest

from most.stages import STAGES
from tests.conftest import REPO

# the registry, config and tracking plumbing every stage goes through: they shape no output
PLUMBING = {"most/__init__.py", "most/__main__.py", "most/cli.py", "most/config.py", "most/stages.py", "most/tracking.py"}


def source_of(module: str) -> Path | None:
    base = REPO.joinpath(*module.split("."))
    return next((path for path in (base.with_suffix(".py"), base / "__init__.py") if path.exists()), None)


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


def code_closure(module: str) -> set[str]:
    seen, pending = set(), [module]
    while pending:
        path = source_of(pending.pop())
        if path is None or str(path.relative_to(REPO)) in seen:
            continue
        seen.add(str(path.relative_to(REPO)))
        pending += imports_of(path)
    return seen - PLUMBING


def test_the_closure_follows_imports_into_functions_and_packages():
    closure = code_closure("most.model.graft")
    assert {"most/model/graft.py", "most/model/moe.py", "most/model/pretrain_base.py", "most/speech/corpus.py"} <= closure
    assert "most/model/__init__.py" not in code_closure("most.model.pretrain_base")  # only `from most.model.sequences import`


@pytest.mark.parametrize("stage", STAGES)
def test_every_module_a_stage_imports_is_in_its_code(stage):
    code = STAGES[stage].code
    uncovered = [path for path in code_closure(STAGES[stage].module) if not any(path == c or path.startswith(f"{c}/") for c in code)]
    assert sorted(uncovered) == []
