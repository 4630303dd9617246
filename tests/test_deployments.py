"""The deployment registry and the pieces of trigger/status that need no running Dagster.

Covers metaflow_dagster/deployments.py (workspace file, FLOW literal, run config, status mapping, webserver
reload) and the parts of the plugin that must act before anything is written: `create` registration and its
messages, options the Deployer refuses, the stand-in flow of `from_deployment`.
"""

import http.server
import json
import multiprocessing
import os
import subprocess
import sys
import threading

import pytest
from dagster import DagsterRunStatus
from dagster._core.workspace.load_target import WorkspaceFileTarget

from metaflow_dagster import deployments as dep
from tests.helpers import flow_path


def test_workspace_is_sorted_readable_by_dagster_and_keeps_foreign_entries(tmp_path):
    home = str(tmp_path)
    ws = dep.Workspace(home)
    os.makedirs(ws.dir)
    with open(ws.path, "w") as f:
        f.write("load_from:\n  - python_module: {module_name: theirs, location_name: Theirs}\n")
    assert ws.register("ZFlow", str(tmp_path / "z.py")) is False
    assert ws.register("AFlow", str(tmp_path / "a.py")) is False
    assert ws.register("ZFlow", str(tmp_path / "z2.py")) is True
    assert ws.deployments() == {"AFlow": str(tmp_path / "a.py"), "ZFlow": str(tmp_path / "z2.py")}
    origins = WorkspaceFileTarget(paths=[ws.path]).create_origins()
    assert [o.location_name for o in origins] == ["Theirs", "AFlow", "ZFlow"]
    assert origins[1].loadable_target_origin.python_file == str(tmp_path / "a.py")
    assert origins[1].loadable_target_origin.working_directory == str(tmp_path)
    assert ws.unregister("AFlow") is True and ws.unregister("AFlow") is False
    assert ws.deployments() == {"ZFlow": str(tmp_path / "z2.py")}
    assert "Theirs" in open(ws.path).read()
    assert sorted(os.listdir(ws.dir)) == ["workspace.lock", "workspace.yaml"], "no temporary file is left"
    with pytest.raises(dep.DeploymentException, match="no deployment named \\*AFlow\\*"):
        ws.get("AFlow")


def _register_many(home, start):
    for i in range(start, start + 10):
        dep.Workspace(home).register("Flow%02d" % i, "/defs/flow%02d.py" % i)


def test_concurrent_registrations_keep_every_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_register_many, args=(str(tmp_path), 10 * k)) for k in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert list(dep.Workspace(str(tmp_path)).deployments()) == ["Flow%02d" % i for i in range(40)]


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


def test_new_run_ids_follow_the_runtime_derivation():
    dagster_run_id, run_id = dep.new_run_ids()
    assert run_id == "dagster-" + dagster_run_id.replace("-", "")[:20]
    assert dep.run_url(dagster_run_id, {}) == "http://127.0.0.1:3000/runs/" + dagster_run_id
    assert dep.run_url("x", {dep.WEBSERVER_URL_ENV: "http://dagster:8080/"}) == "http://dagster:8080/runs/x"


class _GraphQL(http.server.BaseHTTPRequestHandler):
    queries = []
    missing = False

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _GraphQL.queries.append(body)
        typename = "RepositoryLocationNotFound" if _GraphQL.missing else "WorkspaceLocationEntry"
        key = "reloadRepositoryLocation" if "reloadRepositoryLocation" in body["query"] else "reloadWorkspace"
        answer = json.dumps({"data": {key: {"__typename": typename}}}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


def test_reload_webserver_sends_the_right_mutation_and_is_silent_when_unreachable():
    server = http.server.HTTPServer(("127.0.0.1", 0), _GraphQL)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = "http://127.0.0.1:%d" % server.server_port
    try:
        assert dep.reload_webserver("LinearFlow", url)
        assert "reloadRepositoryLocation" in _GraphQL.queries[-1]["query"]
        assert _GraphQL.queries[-1]["variables"] == {"n": "LinearFlow"}
        assert dep.reload_webserver(None, url)
        assert "reloadWorkspace" in _GraphQL.queries[-1]["query"]
        _GraphQL.missing, n = True, len(_GraphQL.queries)
        assert dep.reload_webserver("NewFlow", url)
        assert "reloadWorkspace" in _GraphQL.queries[n + 1]["query"], "an unknown location reloads the workspace"
    finally:
        server.shutdown()
        server.server_close()
    assert dep.reload_webserver(None, url, timeout=2) is False


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
    assert "Serve every deployed flow with: dagster dev -w %s --use-legacy-code-server-behavior" % workspace in res.stderr
    assert "reloaded" not in res.stderr, "no webserver answers, and that is not an error"
    # Without a FILE the definitions go beside the workspace.
    res = project.run([sys.executable, flow_path("failing_flow.py"), "dagster", "create"], **nowhere)
    assert res.returncode == 0, res
    default = os.path.join(project.home, "metaflow", "definitions", "FailingFlow.py")
    assert dep.Workspace(project.home).deployments() == {"FailingFlow": default, "LinearFlow": defs}
    assert dep.read_flow(default)["name"] == "FailingFlow"


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
