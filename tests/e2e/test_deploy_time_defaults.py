"""Parameter defaults computed at deploy time reach Dagster with their Parameter's type (issue #18, item 1).

PDefFlow's defaults are functions of the ParameterContext (of int, JSON, bool, float and str type, and an
IncludeFile's path), and a `config_expr`. `create` evaluates them once, as Argo Workflows' `create` does,
and the launchpad takes them typed: the run started without values gives exactly the artifacts of
`python pdef_flow.py run`, and so does a run given values, on the launchpad and through `dagster trigger`.
Results are read through the Metaflow client and the Dagster instance.
"""

import sys

import pytest

from tests.helpers import (
    DagsterDev,
    cli_params,
    deployed_run,
    differences,
    flow_literal,
    flow_path,
    native_run,
    snapshot,
)

FLOW = flow_path("pdef_flow.py")
DEFAULTS = [42, 41, {"tags": ["x", "y"], "base": 41, "by": "spec"}, True, 20.5, "PDefFlow-label", "default notes\n"]
TYPES = ["int", "int", "dict", "bool", "float", "str", "str"]


@pytest.fixture
def given(tmp_path):
    notes = tmp_path / "given_notes.txt"
    notes.write_text("given notes\n")
    return {"a": 5, "b": 7, "spec": {"given": [1, None]}, "flag": False, "ratio": 0.25, "label": "given",
            "notes": str(notes)}


def values(pathspec):
    from metaflow import Run, namespace

    namespace(None)
    data = Run(pathspec)["start"].task.data
    return data.values, data.types


def assert_same_runs(native, deployed):
    diff, compared = differences(snapshot(native), snapshot(deployed))
    assert not diff, "%s and %s differ:\n%s" % (native, deployed, "\n".join(diff))
    assert compared > 20


def test_the_launchpad_has_the_typed_defaults(project):
    defs, _ = project.create(FLOW)
    params = {p["name"]: p for p in flow_literal(defs)["parameters"]}
    assert {name: params[name]["default"] for name in ("a", "b", "spec", "flag", "ratio", "label")} == {
        "a": 42, "b": 41, "spec": {"tags": ["x", "y"], "base": 41, "by": "spec"}, "flag": True, "ratio": 20.5,
        "label": "PDefFlow-label",
    }
    assert params["notes"]["type"] == "file" and '"type": "uploader-v2"' in params["notes"]["default"]
    assert params["a"]["help"] == "a function of the config" and params["b"]["help"] == "a config_expr"
    # The start op's config schema takes them with their types (Dagster refused the text "42" for an Int).
    from metaflow_dagster.runtime import FlowRuntime

    schema = FlowRuntime(flow_literal(defs)).param_schema()
    typed = {name: (f.config_type.given_name, f.default_value) for name, f in schema.items() if name != "notes"}
    assert typed == {"a": ("Int", 42), "b": ("Int", 41), "flag": ("Bool", True), "ratio": ("Float", 20.5),
                     "label": ("String", "PDefFlow-label"),
                     "spec": ("String", '{"tags": ["x", "y"], "base": 41, "by": "spec"}')}


def test_runs_without_and_with_values_equal_native_runs(project, given):
    native = native_run(project.workdir, FLOW, env=project.env())
    assert values(native) == (DEFAULTS, TYPES)
    assert_same_runs(native, deployed_run(project, FLOW))
    native = native_run(project.workdir, FLOW, given, env=project.env())
    assert values(native) == ([5, 7, {"given": [1, None]}, False, 0.25, "given", "given notes\n"], TYPES)
    assert_same_runs(native, deployed_run(project, FLOW, given))


def test_triggered_runs_without_and_with_values_equal_native_runs(project, given, tmp_path):
    project.create(FLOW)
    dev = DagsterDev(project).start()
    try:
        for params in ({}, given):
            run_id = tmp_path / "run_id"
            res = project.run([sys.executable, FLOW, "dagster", "trigger", "--wait", "--run-id-file", str(run_id),
                               *cli_params(params)])
            assert res.returncode == 0, res
            native = native_run(project.workdir, FLOW, params, env=project.env())
            assert_same_runs(native, "PDefFlow/" + run_id.read_text())
    finally:
        dev.stop()
