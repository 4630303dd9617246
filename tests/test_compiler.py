"""The compile path: `dagster create`, the IR, the C core through its binding, and the `mfdc` driver."""

import ast
import json
import os
import runpy
import subprocess
import sys

import pytest

from metaflow_dagster import _core
from metaflow_dagster import deployments as dep
from tests.helpers import REPO, flow_path

MFDC = os.path.join(REPO, "build", "mfdc")


def export_ir(project, fixture):
    res = project.run([sys.executable, flow_path(fixture), "dagster", "create", "--ir-only"])
    assert res.returncode == 0, res
    return json.loads(res.stdout[res.stdout.index("{"):])


def runtime_src():
    from metaflow_dagster.amalgamate import runtime_source

    return runtime_source()


def runtime_file(tmp_path):
    """The amalgamated runtime in a file, for `mfdc -r`."""
    path = tmp_path / "runtime.py"
    res = subprocess.run([sys.executable, "-m", "metaflow_dagster.amalgamate", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return str(path)


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


def test_a_switch_case_straight_into_a_join_gets_metaflows_reason(project):
    """Metaflow's lint refuses it at `create`; the core refuses the same IR with the same reason (issue #19)."""
    _, res = project.create(flow_path("switch_case_into_join_flow.py"), check=False)
    assert res.returncode != 0
    assert "A conditional path cannot lead directly to a join step" in res.stdout + res.stderr
    ir = json.load(open(os.path.join(REPO, "tests", "golden", "err_switch_case_into_join.json")))
    with pytest.raises(_core.CompileError) as err:
        _core.compile(ir, runtime_src())
    [diag] = err.value.diagnostics
    assert (diag["step"], diag["line"]) == ("process_item", 13)
    assert "a conditional path cannot lead directly to a join step" in diag["message"]


BAD_DEFAULT_FLOW = """
from metaflow import FlowSpec, Parameter, step


def as_text(ctx):
    return "42"


class BadDefaultFlow(FlowSpec):
    n = Parameter("n", default=%s, type=int)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BadDefaultFlow()
"""


@pytest.mark.parametrize("default, message", [
    # Metaflow's own check of a deploy-time function's value, as `run` and Argo's `create` make it.
    ("as_text", "flow BadDefaultFlow: The value returned by the deploy-time function for the parameter n field "
                "default has a wrong type. Expected a int."),
    # A default its Parameter's type refuses, as `run` refuses it ("abc is not a valid integer").
    ('"abc"', "flow BadDefaultFlow: the default of parameter n, 'abc', is not a valid int: abc is not a valid "
              "integer"),
])
def test_a_default_of_the_wrong_type_is_refused_naming_flow_and_parameter(project, default, message):
    flow = os.path.join(project.workdir, "bad_default_flow.py")
    with open(flow, "w") as f:
        f.write(BAD_DEFAULT_FLOW % default)
    out, res = project.create(flow, check=False)
    assert res.returncode != 0 and message in res.stderr, res
    assert not os.path.exists(out)


def test_parameter_defaults_are_typed_json_values(project):
    """A default is converted by its Parameter's type, as Click converts it in `run`: text given to an int
    Parameter becomes an int, a JSONType default its JSON value, a function's value its typed value."""
    params = {p["name"]: p for p in export_ir(project, "pdef_flow.py")["parameters"]}
    assert [(n, params[n]["type"], params[n]["default"]) for n in ("a", "b", "spec", "flag", "ratio", "label")] == [
        ("a", "int", 42), ("b", "int", 41), ("spec", "json", {"tags": ["x", "y"], "base": 41, "by": "spec"}),
        ("flag", "bool", True), ("ratio", "float", 20.5), ("label", "str", "PDefFlow-label"),
    ]
    params = {p["name"]: p for p in export_ir(project, "opt_params_flow.py")["parameters"]}
    assert params["spec"]["default"] == {"k": 1}  # given as the text '{"k": 1}'
    assert params["needed"]["default"] is None and params["needed"]["required"] is True


def test_the_ir_example_in_the_docs_compiles_and_has_every_field_create_exports(project):
    """docs/ir.md's example is a whole IR: the core compiles it, and it has each key `create --ir-only` gives."""
    doc = open(os.path.join(REPO, "docs", "ir.md")).read()
    example = json.loads(doc.split("## Example", 1)[1].split("```json\n", 1)[1].split("```", 1)[0])
    text = _core.compile(example, runtime_src())
    assert 'FLOW = {\n    "name": "LinearFlow",' in text
    exported = export_ir(project, "linear_flow.py")
    for part in ("flow", "settings", "options"):
        assert sorted(example[part]) == sorted(exported[part]), part
    assert sorted(example["steps"][0]) == sorted(exported["steps"][0])
    assert sorted(example) == sorted(exported)


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
    runtime_py = runtime_file(tmp_path)
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
        "import metaflow_extensions.mfdagster.plugins.dagster.dagster_deployer_objects\n"
        "import metaflow_extensions.mfdagster.plugins.dagster.dagster_compiler as c\n"
        "import metaflow_extensions.mfdagster.plugins.dagster.dagster_cli\n"
        "import metaflow_dagster.events, metaflow_dagster.deployments\n"
        "assert [m for m in sys.modules if m.startswith('metaflow_dagster.runtime.')] == "
        "['metaflow_dagster.runtime.contract']\n"  # the contract only: it needs no Dagster
        "print(c.IR_VERSION)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1"


def test_compile_ir_needs_no_dagster():
    """compile_ir finds the runtime's source without importing the runtime (which imports Dagster)."""
    ir_path = os.path.join(REPO, "tests", "golden", "linear.json")
    code = (
        "import sys\n"
        "class NoDagster:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'dagster':\n"
        "            raise ImportError('dagster is not importable here')\n"
        "sys.meta_path.insert(0, NoDagster())\n"
        "import json\n"
        "from metaflow_extensions.mfdagster.plugins.dagster.dagster_compiler import compile_ir\n"
        "text = compile_ir(json.load(open(sys.argv[1])))\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'dagster' or m == 'metaflow_dagster.runtime']\n"
        "sys.stdout.write(text)\n"
    )
    out = subprocess.run([sys.executable, "-c", code, ir_path], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout == _core.compile(json.load(open(ir_path)), runtime_src())


def test_generated_file_has_its_imports_at_the_top():
    """The runtime's imports are hoisted above the FLOW literal: the file reads top to bottom."""
    from tests.helpers import doc_ir

    text = _core.compile(doc_ir(), runtime_src())
    body = ast.parse(text).body
    first = next(i for i, node in enumerate(body) if not isinstance(node, (ast.Import, ast.ImportFrom)))
    assert isinstance(body[first], ast.Assign) and body[first].targets[0].id == "FLOW"
    assert not any(isinstance(node, (ast.Import, ast.ImportFrom)) for node in body[first:])
    assert {"collections", "threading"} <= {a.name for node in body[:first] if isinstance(node, ast.Import)
                                            for a in node.names}
    # What is left of the runtime starts with its docstring, right after the marker.
    assert '# ---- embedded runtime: metaflow_dagster/runtime/, amalgamated ----\n"""Runtime of a generated' in text


def test_the_core_names_the_job():
    """The plugin's job name is the core's (_core.job_name): the regex it replaces, and a digit-safe start."""
    import re

    for name in ("HelloFlow", "proj.user.alice.HelloFlow", "p.test.x-y.F", "Fl\u00f6w\u20ac"):
        assert _core.job_name(name) == re.sub(r"[^A-Za-z0-9_]", "_", name)
    assert _core.job_name("9proj.prod.F") == "_9proj_prod_F"
    with pytest.raises(ValueError):
        _core.job_name("a\0b")


# ----- several flows in one file (`create --add-flow`) ------------------------------------------------------

CHAIN_A = flow_path("chain_a_flow.py")
CHAIN = ["--add-flow", flow_path("chain_b_flow.py"), "--add-flow", flow_path("chain_c_flow.py")]


def test_flows_that_cannot_join_a_file_are_refused_naming_the_flow(project):
    out = os.path.join(project.workdir, "etl.py")
    with open(out, "w") as f:
        f.write("previous contents\n")
    cases = [
        # Metaflow rejects the added flow: its file and Metaflow's own message.
        (["--add-flow", flow_path("invalid_flow.py")],
         ["cannot add the flow of %s" % flow_path("invalid_flow.py"), "Step a is missing a self.next() transition"]),
        # The core rejects it: the diagnostic names the flow, its file and the step.
        (CHAIN + ["--add-flow", flow_path("parallel_flow.py")],
         ["cannot compile flows ChainAFlow, ChainBFlow, ChainCFlow, ParallelFlow",
          "parallel_flow.py:11: error: flow 'ParallelFlow': step 'train': @parallel is not supported"]),
        # Two flows of one job name.
        (["--add-flow", CHAIN_A], ["%s and %s both deploy the job chain_user_tester_ChainAFlow" % (CHAIN_A, CHAIN_A)]),
        (["--add-flow", "no_such_flow.py"], ["--add-flow no_such_flow.py: no such flow file"]),
    ]
    for args, wanted in cases:
        _, res = project.create(CHAIN_A, out="etl.py", args=args, check=False)
        assert res.returncode != 0, res
        for text in wanted:
            assert text in res.stderr, res
        assert open(out).read() == "previous contents\n", "nothing is written when a flow is refused"
    res = project.run([sys.executable, CHAIN_A, "dagster", "create", "--ir-only", "--add-flow", CHAIN_A])
    assert res.returncode != 0 and "--ir-only prints the IR of one flow" in res.stderr


def test_added_flows_get_the_top_level_and_create_options(project):
    """--with, --branch and the create options reach every flow; a flow without @project ignores --branch."""
    defs, _ = project.create(CHAIN_A, out="etl.py", args=CHAIN + ["--tag", "etl", "--max-workers", "3"],
                             top=["--branch", "nightly", "--with", "retry:times=1"])
    flows = {f["name"]: f for f in dep.read_flows(defs)}
    assert [f["job_name"] for f in flows.values()] == [
        "chain_test_nightly_ChainAFlow", "chain_test_nightly_ChainBFlow", "ChainCFlow"]
    assert flows["ChainBFlow"]["project"]["branch"] == "test.nightly" and flows["ChainCFlow"]["project"] is None
    assert flows["ChainBFlow"]["finish_triggers"]["events"][0]["name"] == "metaflow.chain.test.nightly.ChainAFlow.end"
    for flow in flows.values():
        assert flow["options"]["tags"] == ["etl"] and flow["options"]["max_workers"] == 3
        assert flow["options"]["with"] == ["retry:times=1"] and flow["steps"]["start"]["user_retries"] == 1
        assert flow["settings"] == flows["ChainAFlow"]["settings"]
    # Run config of the start op: its name carries the job's prefix, and the job accepts it.
    from dagster import validate_run_config

    config = dep.run_config(flows["ChainAFlow"], {"seed": 3})
    assert config == {"ops": {"chain_test_nightly_ChainAFlow__start": {"config": {"seed": 3}}}}
    job = runpy.run_path(defs)["defs"].resolve_job_def("chain_test_nightly_ChainAFlow")
    assert validate_run_config(job, config)["ops"]["chain_test_nightly_ChainAFlow__start"]["config"] == {"seed": 3}
    assert dep.read_flow(defs, "ChainCFlow")["name"] == "ChainCFlow"


def test_binding_compiles_several_irs_and_names_the_flow_of_each_problem(project):
    irs = [export_ir(project, f) for f in ("chain_a_flow.py", "chain_b_flow.py", "linear_flow.py")]
    text = _core.compile_many(irs, runtime_src())
    assert text.count("class FlowRuntime") == 1 and text.count("= FlowRuntime(FLOW_") == 3
    assert _core.compile_many(irs[:1], runtime_src()) == _core.compile(irs[0], runtime_src())
    broken = json.loads(json.dumps(irs[2]))
    broken["steps"][1]["next"] = ["nowhere"]
    with pytest.raises(_core.CompileError) as exc:
        _core.compile_many([irs[0], broken, irs[0]], "")
    diags = exc.value.diagnostics
    assert [(d["flow"], d["step"]) for d in diags] == [("LinearFlow", "a")]
    assert "error: flow 'LinearFlow': step 'a': next names 'nowhere'" in str(exc.value)
    with pytest.raises(_core.CompileError) as exc:
        _core.compile_many([irs[0], irs[1], irs[0]], "")
    assert exc.value.diagnostics[0]["flow"] == "ChainAFlow"
    assert "already the job of flow 1" in str(exc.value)
    with pytest.raises(_core.CompileError, match="no flow to compile"):
        _core.compile_many([], "")
    with pytest.raises(TypeError, match=r"irs\[1\]: expected dict, got int"):
        _core.compile_many([irs[0], 1], "")
    with pytest.raises(TypeError, match=r"irs\[0\]\['flow'\]\['doc'\]: expected dict, list"):
        _core.compile_many([dict(irs[0], flow=dict(irs[0]["flow"], doc=object()))], "")


@pytest.mark.skipif(not os.path.exists(MFDC), reason="build/mfdc not built (make mfdc)")
def test_mfdc_compiles_several_irs_into_one_file(project, tmp_path):
    irs = [export_ir(project, f) for f in ("chain_a_flow.py", "chain_b_flow.py")]
    paths = []
    for i, ir in enumerate(irs):
        paths.append(str(tmp_path / ("ir%d.json" % i)))
        with open(paths[-1], "w") as f:
            json.dump(ir, f)
    out = tmp_path / "out.py"
    runtime_py = runtime_file(tmp_path)
    res = subprocess.run([MFDC, "-r", runtime_py, "-o", str(out), *paths], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert out.read_text() == _core.compile_many(irs, runtime_src())
    res = subprocess.run([MFDC, paths[0], paths[1], paths[0]], capture_output=True, text=True)
    assert res.returncode == 1 and "flow 'ChainAFlow': job name 'chain_user_tester_ChainAFlow'" in res.stderr
