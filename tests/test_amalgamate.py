"""The runtime's amalgamation (metaflow_dagster/amalgamate.py): its modules as the one source a file embeds."""

import ast
import os
import subprocess
import sys

import pytest

from metaflow_dagster import amalgamate


def test_the_amalgamation_is_every_module_in_order_with_one_import_block():
    text = amalgamate.runtime_source()
    tree = ast.parse(text)
    assert isinstance(tree.body[0], ast.Expr), "a docstring first"
    body = tree.body[1:]
    first = next(i for i, node in enumerate(body) if not isinstance(node, (ast.Import, ast.ImportFrom)))
    assert not any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body[first:]), "one import block"
    assert all(node.level == 0 for node in body[:first] if isinstance(node, ast.ImportFrom)), "no runtime import"
    headers = [line for line in text.splitlines() if line.startswith("# ----- runtime/")]
    assert [h.split("/")[1].split(".py")[0] for h in headers] == list(amalgamate.MODULES)
    defined = {n.name for n in body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assert {"FlowRuntime", "make_executor", "EventSensorLogic", "_Zygote", "coerce_param"} <= defined


def test_it_needs_no_dagster(tmp_path):
    """Compiling never imports Dagster: the amalgamation is read, not imported."""
    out = tmp_path / "runtime.py"
    code = "import sys; sys.modules['dagster'] = None; from metaflow_dagster.amalgamate import main; main([%r])" % str(out)
    subprocess.run([sys.executable, "-c", code], check=True)
    assert out.read_text() == amalgamate.runtime_source()


def _runtime_dir(tmp_path, **modules):
    for name in amalgamate.MODULES:
        (tmp_path / (name + ".py")).write_text(modules.get(name, '"""%s."""\n' % name))
    return str(tmp_path)


def test_a_name_defined_twice_or_a_late_import_is_refused(tmp_path):
    twice = _runtime_dir(tmp_path, contract='"""c."""\n\ndef f():\n    pass\n', flow='"""f."""\n\nf = 1\n')
    with pytest.raises(amalgamate.AmalgamationError, match="runtime/contract.py and runtime/flow.py both define f"):
        amalgamate.runtime_source(twice)
    os.makedirs(tmp_path / "late")
    late = _runtime_dir(tmp_path / "late", tasks='"""t."""\n\nX = 1\nimport os\n')
    with pytest.raises(amalgamate.AmalgamationError, match="runtime/tasks.py line 4: a top-level import after"):
        amalgamate.runtime_source(late)
