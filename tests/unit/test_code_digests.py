"""A stage's code list (its code digest, its DVC deps) covers every module of ours it imports."""

import pytest

from most.stages import STAGES, code_paths
from tests.imports import REPO, imports_of, source_of

# the registry, config and tracking plumbing every stage goes through: they shape no output
PLUMBING = {"most/__init__.py", "most/__main__.py", "most/cli.py", "most/config.py", "most/stages/__init__.py", "most/tracking.py"}


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
    assert {"most/model/graft.py", "most/model/moe.py", "most/model/base_lm.py", "most/data/manifest.py"} <= closure
    assert "most/model/__init__.py" not in code_closure("most.model.base_lm")  # only `from most.model.sequences import`


@pytest.mark.parametrize("stage", STAGES)
def test_every_module_a_stage_imports_is_in_its_code(stage):
    code = code_paths(stage)
    uncovered = [path for path in code_closure(STAGES[stage].module) if not any(path == c or path.startswith(f"{c}/") for c in code)]
    assert sorted(uncovered) == []
