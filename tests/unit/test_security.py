"""No code of ours runs downloaded code or unpickles: checked over every Python file and rule file."""

import ast
import re

import pytest

from tests.conftest import REPO

PYTHON_FILES = sorted(p for folder in ("most", "tests", "benchmarks") for p in (REPO / folder).rglob("*.py"))
RULE_FILES = sorted([REPO / "workflow" / "Snakefile", *(REPO / "workflow" / "rules").glob("*.smk")])
UNPICKLING_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve"}


def dotted(node: ast.AST) -> str:
    """`torch.load` for the call target `torch.load`; '' where it is not a plain dotted name."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        inner = dotted(node.value)
        return f"{inner}.{node.attr}" if inner else ""
    return ""


def keyword(call: ast.Call, name: str):
    found = [k.value for k in call.keywords if k.arg == name]
    return found[0] if found else None


def is_constant(node, value) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def problems_in(path) -> list[str]:
    found, shown = [], path.relative_to(REPO) if path.is_relative_to(REPO) else path
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        where = f"{shown}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"{where}: imports {name}" for name in names if name.split(".")[0] in UNPICKLING_MODULES]
        if not isinstance(node, ast.Call):
            continue
        target = dotted(node.func)
        remote_code = keyword(node, "trust_remote_code")
        if remote_code is not None and not is_constant(remote_code, False):
            found.append(f"{where}: trust_remote_code is not False")
        if target == "torch.load" and not is_constant(keyword(node, "weights_only"), True):
            found.append(f"{where}: torch.load without weights_only=True")
        if target in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
            found.append(f"{where}: {target} (use yaml.safe_load)")
        if target.endswith(("np.load", "numpy.load")) and is_constant(keyword(node, "allow_pickle"), True):
            found.append(f"{where}: np.load with allow_pickle=True")
        if target.startswith("subprocess.") and is_constant(keyword(node, "shell"), True):
            found.append(f"{where}: {target} with shell=True")
        if target in ("os.system", "os.popen", "eval", "exec"):
            found.append(f"{where}: {target}")
    return found


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import pickle\nimport torch, yaml, subprocess\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\nyaml.load('x')\n"
        "subprocess.run('ls', shell=True)\nAutoModel.from_pretrained('x', trust_remote_code=True)\neval('1')\n"
    )
    assert len(problems_in(bad)) == 7


def test_no_python_file_runs_remote_code_unpickles_or_calls_a_shell():
    assert [problem for path in PYTHON_FILES for problem in problems_in(path)] == []


@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_rule_files_neither_trust_remote_code_nor_unpickle(path):
    text = path.read_text()
    assert not re.search(r"trust_remote_code\s*=\s*True|import pickle|torch\.load\(|shell\s*=\s*True", text)
    # config values reach shell commands only as quoted placeholders ({input.x:q}) or as numbers from resources
    commands = re.findall(r'shell:\n((?:\s+".*"\n)+)', text)
    assert len(commands) == text.count("shell:")
    for command in commands:
        for placeholder in re.findall(r"\{([^}]+)\}", command):
            assert placeholder.endswith(":q") or placeholder.startswith(("resources.", "threads")), (path.name, placeholder)
