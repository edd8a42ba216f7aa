"""The package's layout: stages apart from libraries, every import resolves, and no import cycle."""

import ast

import pytest

from most import stages
from most.stages import STAGES
from tests.imports import REPO, imports_of, module_of, source_of

MODULES = {module_of(path): imports_of(path) for path in sorted((REPO / "most").rglob("*.py"))}


def test_every_stage_runs_from_its_own_module_in_most_stages():
    for name, stage in STAGES.items():
        assert stage.module == f"most.stages.{name}", name
        assert stage.module in MODULES, f"{stage.module} does not exist"
    assert {module for module in MODULES if module.startswith("most.stages.")} == {stage.module for stage in STAGES.values()}


def test_no_library_imports_a_stage_module():
    # stages call libraries, never the other way round (the registry itself, most.stages, is plumbing)
    offenders = {
        module: sorted(name for name in imported if name.startswith("most.stages."))
        for module, imported in MODULES.items()
        if not module.startswith("most.stages") and any(name.startswith("most.stages.") for name in imported)
    }
    assert offenders == {}


def names_defined(path) -> set[str]:
    """What `from <module of path> import name` can take: its top-level definitions and imports."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names |= {(alias.asname or alias.name).split(".")[0] for alias in node.names}
    return names


def test_every_import_of_ours_names_something_that_exists():
    # imports inside functions too: a module moved or a name renamed must not wait for a run to fail
    missing = []
    for path in sorted((REPO / "most").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "most":
                module = source_of(node.module)
                if module is None:
                    missing.append(f"{path.relative_to(REPO)}: {node.module}")
                    continue
                defined = names_defined(module)
                missing += [
                    f"{path.relative_to(REPO)}: {node.module}.{alias.name}"
                    for alias in node.names
                    if alias.name not in defined and source_of(f"{node.module}.{alias.name}") is None
                ]
            elif isinstance(node, ast.Import):
                missing += [
                    f"{path.relative_to(REPO)}: {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("most") and source_of(alias.name) is None
                ]
    assert missing == []


def cycle_through(start: str) -> list[str] | None:
    """A chain of imports from `start` back to itself, or None."""
    pending, seen = [(start, [start])], set()
    while pending:
        module, chain = pending.pop()
        for imported in MODULES.get(module, ()):
            if imported == start:
                return chain + [start]
            if imported not in seen:
                seen.add(imported)
                pending.append((imported, chain + [imported]))
    return None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_itself_through_others(module):
    # a package's __init__ importing its own modules (re-exports) is not a cycle of the design
    assert cycle_through(module) is None


def test_the_cycle_check_finds_a_cycle():
    MODULES["most.fake_a"], MODULES["most.fake_b"] = {"most.fake_b"}, {"most.fake_a"}
    try:
        assert cycle_through("most.fake_a") == ["most.fake_a", "most.fake_b", "most.fake_a"]
    finally:
        del MODULES["most.fake_a"], MODULES["most.fake_b"]


def test_the_input_contexts_name_stages_of_the_registry():
    assert stages._TRAINS_ON_INPUTS | stages._MEASURES_INPUTS <= set(STAGES)
    assert stages.input_context("posttrain") == "training" and stages.input_context("eval_asr") == "evaluation"
    assert stages.input_context("graft") == "input"
