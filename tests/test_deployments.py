"""The deployment registry and the pieces of trigger/status that need no running Dagster.

Covers metaflow_dagster/deployments.py (records, workspace file, FLOW literal, run config, status mapping,
the webserver's address) and the parts of the plugin that must act before anything is written: `create` registration and its
messages, options the Deployer refuses, the stand-in flow of `from_deployment`.
"""

import multiprocessing
import os
import subprocess
import sys

import pytest
from dagster import DagsterRunStatus
from dagster._core.workspace.load_target import WorkspaceFileTarget

from metaflow_dagster import deployments as dep
from metaflow_dagster import location as loc
from tests.helpers import flow_path


def _defs(tmp_path, name, jobs=None):
    """A file with the FLOW literal(s) of a generated definitions file (enough for the registry)."""
    path = tmp_path / ("%s.py" % name)
    jobs = jobs or [name]
    if len(jobs) == 1:
        path.write_text("FLOW = %r\n" % {"name": name, "job_name": name})
    else:
        path.write_text("".join("FLOW_%s = %r\n" % (j, {"name": j + "Flow", "job_name": j}) for j in jobs))
    return str(path)


def test_workspace_serves_one_location_records_each_deployment_and_keeps_foreign_entries(tmp_path):
    home = str(tmp_path)
    ws = dep.Workspace(home)
    os.makedirs(ws.dir)
    with open(ws.path, "w") as f:
        f.write("load_from:\n  - python_module: {module_name: theirs, location_name: Theirs}\n")
    assert ws.register("ZFlow", _defs(tmp_path, "ZFlow")) is False
    assert ws.register("AFlow", _defs(tmp_path, "AFlow")) is False
    assert ws.register("ZFlow", _defs(tmp_path, "ZFlow")) is True
    assert ws.deployments() == {"AFlow": str(tmp_path / "AFlow.py"), "ZFlow": str(tmp_path / "ZFlow.py")}
    origins = WorkspaceFileTarget(paths=[ws.path]).create_origins()
    assert [o.location_name for o in origins] == ["metaflow", "Theirs"]
    assert origins[0].loadable_target_origin.python_file == ws.location_file
    with open(ws.location_file) as f, open(loc.__file__) as g:
        assert f.read() == g.read(), "the location is a verbatim copy of metaflow_dagster/location.py"
    assert ws.unregister("AFlow") is True and ws.unregister("AFlow") is False
    assert ws.deployments() == {"ZFlow": str(tmp_path / "ZFlow.py")}
    assert "Theirs" in open(ws.path).read()
    assert sorted(os.listdir(ws.dir)) == ["deployments", "location.py", "workspace.lock", "workspace.yaml"]
    assert os.listdir(ws.records_dir) == ["ZFlow.json"], "no temporary file is left"
    with pytest.raises(dep.DeploymentException, match="no deployment named \\*AFlow\\*"):
        ws.get("AFlow")
    # A file of several flows is one deployment, found by any of its jobs.
    ws.register("etl", _defs(tmp_path, "etl", ["etl", "load"]))
    assert ws.locate("load") == ("etl", str(tmp_path / "etl.py"))


def test_entries_of_the_one_location_per_flow_layout_become_records(tmp_path):
    """A workspace written by an earlier metaflow-dagster (a python_file location per generated file) is
    taken over: its entries become records of the one location, entries written by hand stay."""
    home = str(tmp_path)
    ws = dep.Workspace(home)
    os.makedirs(ws.dir)
    old = _defs(tmp_path, "OldFlow")
    with open(ws.path, "w") as f:
        f.write("load_from:\n- python_file: {relative_path: %s, location_name: OldFlow}\n"
                "- python_file: {relative_path: /elsewhere/theirs.py, location_name: Theirs}\n" % old)
    ws.register("NewFlow", _defs(tmp_path, "NewFlow"))
    assert ws.deployments() == {"NewFlow": str(tmp_path / "NewFlow.py"), "OldFlow": old}
    origins = WorkspaceFileTarget(paths=[ws.path]).create_origins()
    assert [o.location_name for o in origins] == ["metaflow", "Theirs"]


def _register_many(home, start, tmp):
    import pathlib

    for i in range(start, start + 10):
        dep.Workspace(home).register("Flow%02d" % i, _defs(pathlib.Path(tmp), "Flow%02d" % i))


def test_concurrent_registrations_keep_every_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_register_many, args=(str(tmp_path / "home"), 10 * k, str(tmp_path)))
             for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert list(dep.Workspace(str(tmp_path / "home")).deployments()) == ["Flow%02d" % i for i in range(40)]


FLOW = {
    "name": "P",
    "job_name": "P",
    "start_step": "begin",
    "parameters": [
        {"name": "s", "var": "s", "type": "str", "default": "x", "required": False, "help": "a 'str'"},
        {"name": "n-count", "var": "n_count", "type": "int", "default": 1, "required": True, "help": ""},
        {"name": "r", "var": "r", "type": "float", "default": 0.5, "required": False, "help": ""},
        {"name": "b", "var": "b", "type": "bool", "default": False, "required": False, "help": ""},
        {"name": "j", "var": "j", "type": "json", "default": {"k": 1}, "required": False, "help": ""},
    ],
}


def test_read_flow_reads_the_literal_without_running_the_file(tmp_path):
    defs = tmp_path / "defs.py"
    defs.write_text("raise SystemExit('never run')\nFLOW = %r\nmf = object()\n" % FLOW)
    assert dep.read_flow(str(defs)) == FLOW
    (tmp_path / "other.py").write_text("FLOW = make()\n")
    with pytest.raises(dep.DeploymentException, match="not a metaflow-dagster definitions file"):
        dep.read_flow(str(tmp_path / "other.py"))


def test_run_config_types_each_parameter_for_the_start_op():
    values = {"s": 3, "n-count": "7", "r": 2, "b": "true", "j": {"a": [1, 2]}}
    config = dep.run_config(FLOW, values)
    assert config == {"ops": {"begin": {"config": {"s": "3", "n-count": 7, "r": 2.0, "b": True, "j": '{"a": [1, 2]}'}}}}
    assert isinstance(config["ops"]["begin"]["config"]["r"], float)
    assert dep.run_config(FLOW, {"b": False, "j": "[1]"})["ops"]["begin"]["config"] == {"b": False, "j": "[1]"}
    assert dep.run_config(FLOW, {}) == {}
    with pytest.raises(dep.DeploymentException, match="flow \\*P\\* was deployed without the parameter\\(s\\) zzz"):
        dep.run_config(FLOW, {"zzz": 1})
    with pytest.raises(dep.DeploymentException, match="parameter \\*n-count\\*"):
        dep.run_config(FLOW, {"n-count": "many"})


def test_status_mapping_covers_every_dagster_status():
    assert set(dep.STATUS) == {s.value for s in DagsterRunStatus}
    assert set(dep.STATUS.values()) == {"PENDING", "RUNNING", "SUCCEEDED", "FAILED"}
    assert [dep.STATUS[s] for s in ("QUEUED", "STARTED", "CANCELING", "SUCCESS", "FAILURE", "CANCELED")] == [
        "PENDING", "RUNNING", "RUNNING", "SUCCEEDED", "FAILED", "FAILED"
    ]


def test_new_run_ids_are_never_integers_and_links_use_the_webserver():
    run_id = dep.new_run_id()
    assert run_id.startswith("dagster-") and len(run_id) == 28 and run_id != dep.new_run_id()
    assert dep.run_url("x", "http://127.0.0.1:3456") == "http://127.0.0.1:3456/runs/x"
    assert dep.run_url("x", None, {}) == "http://127.0.0.1:3000/runs/x"
    assert dep.run_url("x", None, {dep.WEBSERVER_URL_ENV: "http://dagster:8080/"}) == "http://dagster:8080/runs/x"
    assert dep.job_url("http://h:1", "F", "F") == "http://h:1/locations/F@metaflow/jobs/F"


def test_webserver_address_is_read_from_its_command_line():
    assert dep._webserver_address(["python", "-m", "dagster_webserver"]) == "http://127.0.0.1:3000"
    assert dep._webserver_address(["dagster-webserver", "-p", "3456", "-h", "0.0.0.0"]) == "http://127.0.0.1:3456"
    assert dep._webserver_address(["x", "--port=81", "--host", "10.0.0.2", "--path-prefix", "/dg/"]) == (
        "http://10.0.0.2:81/dg")
    assert dep._is_webserver(["/usr/bin/python3", "-m", "dagster_webserver", "--port", "1"])
    assert dep._is_webserver(["/venv/bin/python", "/venv/bin/dagster-webserver"])
    assert not dep._is_webserver(["python", "-m", "dagster", "dev"])


def test_instance_config_is_written_only_where_there_is_none(tmp_path):
    from dagster import DagsterInstance

    path = dep.ensure_instance_config(str(tmp_path))
    assert path == str(tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as inst:
        assert inst.run_coordinator.dequeue_interval_seconds == 1
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    assert dep.ensure_instance_config(str(tmp_path)) is None
    assert (tmp_path / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n", "never overwritten"


def test_stand_in_flow_declares_the_deployed_parameters(tmp_path):
    import importlib.util

    from metaflow.parameters import JSONTypeClass

    from metaflow_extensions.mfdagster.plugins.dagster.dagster_deployer_objects import stand_in_flow

    path = tmp_path / "stand_in.py"
    path.write_text(stand_in_flow(dict(FLOW, name="StandIn")))
    spec = importlib.util.spec_from_file_location("stand_in", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    params = {p.name: p for _, p in module.StandIn._get_parameters()}
    for p in params.values():
        p.init()
    assert sorted(params) == ["b", "j", "n-count", "r", "s"]
    assert [params[n].kwargs["type"] for n in ("s", "n-count", "r", "b")] == [str, int, float, bool]
    assert isinstance(params["j"].kwargs["type"], JSONTypeClass)
    assert params["n-count"].kwargs["required"] and params["s"].kwargs["help"] == "a 'str'"
    assert "default" not in params["s"].kwargs, "defaults stay those of the deployed job"


def test_create_registers_the_deployment_and_prints_how_to_serve_it(project):
    nowhere = {dep.WEBSERVER_URL_ENV: "http://127.0.0.1:9"}  # no webserver answers there
    defs, res = project.create(flow_path("linear_flow.py"), **nowhere)
    workspace = os.path.join(project.home, "metaflow", "workspace.yaml")
    assert dep.Workspace(project.home).deployments() == {"LinearFlow": defs}
    assert "Serve every deployed flow with: dagster dev -w %s\n" % workspace in res.stderr
    assert "No Dagster webserver serves %s yet" % project.home in res.stderr, "and that is not an error"
    assert dep.WEBSERVER_URL_ENV in res.stderr, "the one setting for a webserver it cannot find is named"
    # Without a FILE the definitions go beside the workspace.
    res = project.run([sys.executable, flow_path("failing_flow.py"), "dagster", "create"], **nowhere)
    assert res.returncode == 0, res
    default = os.path.join(project.home, "metaflow", "definitions", "FailingFlow.py")
    assert dep.Workspace(project.home).deployments() == {"FailingFlow": default, "LinearFlow": defs}
    assert dep.read_flow(default)["name"] == "FailingFlow"


def test_create_writes_nothing_when_the_definitions_do_not_load(project):
    """The generated file is loaded in a fresh process as a code server loads it before anything is written
    or deployed: a flow whose definitions Dagster refuses (here the schedule's timezone) is one error naming
    the flow and what failed."""
    out = os.path.join(project.workdir, "mars.py")
    res = project.run([sys.executable, flow_path("bad_timezone_flow.py"), "dagster", "create", out])
    assert res.returncode != 0, res
    assert "the Dagster definitions of flow MarsFlow do not load, so nothing was written or deployed" in res.stderr
    assert "Invalid execution timezone Mars/Olympus_Mons for MarsFlow_schedule" in res.stderr
    assert not os.path.exists(out) and os.listdir(project.workdir) == ["dagster_home"], "not even a temporary file"
    assert not os.path.exists(os.path.join(project.home, "metaflow")), "nothing deployed"


def test_create_without_dagster_home_writes_the_file_and_skips_registration(project, tmp_path):
    out = str(tmp_path / "alone.py")
    env = project.env()
    del env["DAGSTER_HOME"]
    proc = subprocess.run(
        [sys.executable, flow_path("linear_flow.py"), "dagster", "create", out], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(out)
    assert "Registration skipped because DAGSTER_HOME is not set." in proc.stderr
    assert "dagster dev -f %s" % out in proc.stderr
    assert not os.path.exists(os.path.join(project.home, "metaflow"))


def test_commands_name_the_missing_deployment(project):
    res = project.run([sys.executable, flow_path("linear_flow.py"), "dagster", "trigger"])
    assert res.returncode != 0 and "no deployment named LinearFlow" in res.stderr, res
    res = project.run([sys.executable, flow_path("linear_flow.py"), "dagster", "create", "x.py", "--bogus"])
    assert res.returncode != 0 and "no such option" in res.stderr.lower()
    res = project.run([sys.executable, flow_path("linear_flow.py"), "dagster", "--name", "Other", "create", "x.py"])
    assert res.returncode != 0 and "not supported" in res.stderr
    assert not os.path.exists(os.path.join(project.workdir, "x.py"))


def test_deployer_refuses_unsupported_options_before_writing_anything(project, monkeypatch):
    from metaflow import Deployer

    monkeypatch.setenv("DAGSTER_HOME", project.home)
    deployer = Deployer(flow_path("linear_flow.py"), show_output=False, cwd=project.workdir)
    with pytest.raises(Exception, match="create option\\(s\\) only_json not supported"):
        deployer.dagster().create(only_json=True)
    with pytest.raises(Exception, match="Deployer option\\(s\\) authorize not supported"):
        deployer.dagster(authorize="token")
    assert not os.path.exists(os.path.join(project.home, "metaflow"))
