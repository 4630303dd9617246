"""The compile path: `dagster create`, the IR, the C core through its binding, and the `mfdc` driver."""

import ast
import json
import os
import subprocess
import sys

import pytest

from metaflow_dagster import _core
from tests.helpers import REPO, flow_path

MFDC = os.path.join(REPO, "build", "mfdc")


def export_ir(project, fixture):
    res = project.run([sys.executable, flow_path(fixture), "dagster", "create", "--ir-only"])
    assert res.returncode == 0, res
    return json.loads(res.stdout[res.stdout.index("{"):])


def runtime_src():
    from metaflow_dagster import runtime

    return open(runtime.__file__).read()


def test_ir_export_describes_the_processed_graph(project):
    ir = export_ir(project, "switch_in_foreach_flow.py")
    assert ir["ir_version"] == 1
    steps = {s["name"]: s for s in ir["steps"]}
    assert steps["start"]["type"] == "foreach" and steps["start"]["foreach_var"] == "xs"
    assert steps["route"]["switch"] == {"condition": "kind", "cases": [["even", "even"], ["odd", "odd"]]}
    assert steps["join"]["split_parents"] == ["start"]
    assert steps["route"]["line"] > 0 and steps["route"]["file"].endswith("switch_in_foreach_flow.py")


def test_compile_is_deterministic(project):
    ir = export_ir(project, "nested_foreach_flow.py")
    a = _core.compile(ir, runtime_src())
    b = _core.compile(json.loads(json.dumps(ir)), runtime_src())
    assert a == b
    first, _ = project.create(flow_path("nested_foreach_flow.py"), out="one.py")
    second, _ = project.create(flow_path("nested_foreach_flow.py"), out="two.py")
    assert open(first, "rb").read() == open(second, "rb").read()


@pytest.mark.parametrize("fixture", ["linear_flow.py", "foreach3_flow.py", "switch_in_foreach_flow.py"])
def test_generated_file_is_self_contained(project, fixture):
    defs, _ = project.create(flow_path(fixture))
    tree = ast.parse(open(defs).read())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) - {"__main__"} <= {"dagster", "metaflow"}
    # It loads on its own, without this repository on the path.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import runpy; d = runpy.run_path(%r)['defs']; print(len(d.resolve_all_job_defs()))" % defs
    out = subprocess.run([sys.executable, "-c", code], cwd="/", env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("1")


def test_each_op_names_its_step_and_source_line(project):
    defs, _ = project.create(flow_path("split3_flow.py"))
    text = open(defs).read()
    for step in ("start", "a", "b", "c", "join", "end"):
        assert "# step '%s' (split3_flow.py:" % step in text
        assert 'name="%s"' % step in text


def test_parallel_is_rejected_at_compile_time(project):
    out = os.path.join(project.workdir, "defs.py")
    with open(out, "w") as f:
        f.write("previous contents\n")
    _, res = project.create(flow_path("parallel_flow.py"), check=False)
    assert res.returncode != 0
    assert "not supported" in res.stderr
    assert "step 'train'" in res.stderr and "parallel_flow.py:" in res.stderr
    # Nothing half-written: the previous file is untouched.
    assert open(out).read() == "previous contents\n"


def test_a_flow_metaflow_rejects_gets_metaflows_message(project):
    _, res = project.create(flow_path("invalid_flow.py"), check=False)
    assert res.returncode != 0
    assert "Step a is missing a self.next() transition" in res.stdout + res.stderr


def test_binding_reports_structured_diagnostics():
    with pytest.raises(_core.CompileError) as exc:
        _core.compile({"ir_version": 99}, "")
    assert "unsupported IR version 99" in str(exc.value)
    assert exc.value.diagnostics and exc.value.diagnostics[0]["severity"] == "error"
    with pytest.raises(TypeError):
        _core.compile({"ir_version": object()}, "")


def test_binding_does_not_leak_on_repeated_compiles(project):
    import resource

    ir = export_ir(project, "foreach3_flow.py")
    src = runtime_src()
    for _ in range(200):
        _core.compile(ir, src)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(2000):
        _core.compile(ir, src)
        with pytest.raises(_core.CompileError):
            _core.compile({"ir_version": 2}, src)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert after - before < 20 * 1024, "max RSS grew by %d KiB over 2000 compiles" % (after - before)


@pytest.mark.skipif(not os.path.exists(MFDC), reason="build/mfdc not built (make mfdc)")
def test_mfdc_driver_compiles_and_rejects(project, tmp_path):
    ir = export_ir(project, "linear_flow.py")
    src = tmp_path / "ir.json"
    src.write_text(json.dumps(ir))
    out = tmp_path / "out.py"
    runtime_py = os.path.join(REPO, "metaflow_dagster", "runtime.py")
    res = subprocess.run([MFDC, "-r", runtime_py, "-o", str(out), str(src)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert out.read_text() == _core.compile(ir, runtime_src())
    bad = tmp_path / "bad.json"
    bad.write_text('{"ir_version": 1, "flow": ')
    res = subprocess.run([MFDC, "-o", str(tmp_path / "bad.py"), str(bad)], capture_output=True, text=True)
    assert res.returncode != 0 and res.stderr.strip().count("\n") == 0 and "bad.json" in res.stderr
    assert not (tmp_path / "bad.py").exists()


def test_metaflow_layer_imports_without_dagster():
    code = (
        "import sys; sys.modules['dagster'] = None\n"
        "import metaflow_extensions.mfdagster.plugins.dagster.dagster_compiler as c\n"
        "import metaflow_extensions.mfdagster.plugins.dagster.dagster_cli\n"
        "print(c.IR_VERSION)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"
