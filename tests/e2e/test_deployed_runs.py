"""Deployments end to end: the Deployer API, the `dagster` CLI and resume, on a real `dagster dev`.

Each test deploys fixture flows into its persistent DAGSTER_HOME (`create` records them and writes
$DAGSTER_HOME/metaflow/workspace.yaml), serves them with `dagster dev -w` on that workspace as `create` prints
it (on a free port, which the commands find by themselves), drives runs exactly as a user does (a script
calling metaflow.Deployer, or `python flow.py dagster ...`), and checks the outcome through the Metaflow
client and the Dagster instance. Every wait is a bounded poll.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
from metaflow import Deployer, Run, namespace
from metaflow.runner.deployer import DeployedFlow

from metaflow_dagster import deployments
from tests.helpers import DagsterDev, flow_path, wait_for, webserver_up

RUN_TIMEOUT = 300


@pytest.fixture
def daemon(project):
    d = DagsterDev(project)
    yield d
    d.stop()


@pytest.fixture
def deploy(project, monkeypatch):
    """`Deployer(flow).dagster().create()` as a user's script calls it, with DAGSTER_HOME set in this process."""
    monkeypatch.setenv("DAGSTER_HOME", project.home)
    namespace(None)

    def create(fixture, **top_level):
        return Deployer(flow_path(fixture), show_output=False, cwd=project.workdir, **top_level).dagster().create()

    return create


def finish(triggered):
    triggered.wait_for_completion(check_interval=2, timeout=RUN_TIMEOUT)
    return triggered.status


def origin_of(task):
    """(origin run id, origin task id) a resumed task was cloned from; None if it ran.

    Metaflow records `origin-task-id` only on clones (`origin-run-id` is on every task, "None" outside resume).
    """
    meta = task.metadata_dict
    return (meta["origin-run-id"], meta["origin-task-id"]) if "origin-task-id" in meta else None


def test_deployer_runs_parameters_of_every_type(project, deploy, daemon):
    deployed = deploy("typed_params_flow.py")
    assert (deployed.name, deployed.flow_name) == ("TypedParamsFlow", "TypedParamsFlow")
    daemon.start()
    run = deployed.trigger(text="dagster", count=7, ratio=2.5, flag=True, spec={"a": [1, 2]})
    flow_name, run_id = run.pathspec.split("/")
    assert flow_name == "TypedParamsFlow" and run_id.startswith("dagster-")
    assert run.dagster_ui_url == "%s/runs/%s" % (daemon.url, run.dagster_run_id)
    assert finish(run) == "SUCCEEDED", daemon.log_tail()
    assert run.run.id == run_id and run.run.successful
    data = run.run["start"].task.data
    assert [data.text, data.count, data.ratio, data.flag, data.spec] == ["dagster", 7, 2.5, True, {"a": [1, 2]}]
    assert data.types == ["str", "int", "float", "bool", "dict"]
    # The Dagster run carries the run id it was given and the origin of the shared code location.
    with deployments.instance(project.home) as inst:
        drun = inst.get_run_by_id(run.dagster_run_id)
    assert drun.tags["metaflow/run_id"] == run_id
    assert drun.remote_job_origin.location_name == "metaflow"
    assert drun.remote_job_origin.repository_origin.repository_name == "TypedParamsFlow"
    # Parameters not given keep their defaults.
    run2 = deployed.trigger(count=3)
    assert finish(run2) == "SUCCEEDED"
    assert run2.run.data.result == "hello:3:0.5:False:['k']"
    # Another process finds the run from the deployment name and the run id alone.
    again = DeployedFlow.get_triggered_run("TypedParamsFlow", run_id, impl="dagster")
    assert (again.pathspec, again.dagster_run_id, again.status) == (run.pathspec, run.dagster_run_id, "SUCCEEDED")


def _start_long_run(deploy, daemon, tmp_path):
    deployed = deploy("sleep_flow.py")
    daemon.start()
    pidfile = tmp_path / "nap.pid"
    run = deployed.trigger(seconds=600, pidfile=str(pidfile))
    pid = wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), RUN_TIMEOUT, "step nap to start")
    return run, int(pid)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open("/proc/%d/stat" % pid) as f:
        return f.read().split()[2] != "Z"


def test_terminated_run_reports_failed(deploy, daemon, tmp_path):
    run, pid = _start_long_run(deploy, daemon, tmp_path)
    try:
        assert run.status == "RUNNING" and run.is_running
        assert run.terminate()
        wait_for(lambda: run.status == "FAILED", 120, "the terminated run to report FAILED")
        assert run.dagster_status == "CANCELED"
        assert not run.is_running
        assert not run.terminate(), "a finished run cannot be terminated again"
        assert not run.run.successful
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_terminate_stops_the_running_task(deploy, daemon, tmp_path):
    run, pid = _start_long_run(deploy, daemon, tmp_path)
    try:
        assert run.terminate()
        wait_for(lambda: run.status == "FAILED", 120, "the terminated run to report FAILED")
        wait_for(lambda: not _alive(pid), 30, "the Metaflow task process %d to exit after terminate" % pid)
    finally:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_from_deployment_rebuilds_config_and_project_flows(deploy, daemon):
    deployed = deploy("project_config_flow.py", config_value=[("cfg", {"greeting": "hey", "times": 3})])
    assert deployed.name == "mfd_demo_user_tester_ProjectConfigFlow"
    daemon.start()
    assert [d.name for d in DeployedFlow.list_deployed_flows(impl="dagster")] == [deployed.name]
    assert list(DeployedFlow.list_deployed_flows("SomeOtherFlow", impl="dagster")) == []
    rebuilt = DeployedFlow.from_deployment(deployed.name, impl="dagster")
    assert (rebuilt.name, rebuilt.flow_name) == (deployed.name, "ProjectConfigFlow")
    assert rebuilt.deployer.flow_file != flow_path("project_config_flow.py")
    run = rebuilt.trigger(who="deployer")
    assert run.pathspec.startswith("ProjectConfigFlow/dagster-")
    assert finish(run) == "SUCCEEDED", daemon.log_tail()
    # The deploy-time config reached the tasks, though the stand-in flow has no config at all.
    assert run.run["start"].task.data.message == "hey hey hey deployer"
    assert rebuilt.delete()
    assert list(DeployedFlow.list_deployed_flows(impl="dagster")) == []


def test_cli_trigger_status_list_delete(project, daemon):
    linear, failing = flow_path("linear_flow.py"), flow_path("failing_flow.py")
    defs, res = project.create(linear)
    workspace = os.path.join(project.home, "metaflow", "workspace.yaml")
    assert "dagster dev -w %s" % workspace in res.stderr
    failing_defs, _ = project.create(failing, out="failing_defs.py")
    daemon.start()

    id_file = os.path.join(project.workdir, "run_id")
    res = project.run(
        [sys.executable, linear, "dagster", "trigger", "--alpha", "2.5", "--greeting", "cli", "--wait",
         "--run-id-file", id_file]
    )
    assert res.returncode == 0, res
    run_id = open(id_file).read()
    assert "LinearFlow/%s" % run_id in res.stderr
    assert Run("LinearFlow/%s" % run_id, _namespace_check=False).data.result == "cli:4:2.5"
    res = project.run([sys.executable, linear, "dagster", "status", run_id])
    assert res.returncode == 0 and res.stdout.strip() == "SUCCEEDED", res
    res = project.run([sys.executable, linear, "dagster", "terminate", run_id])
    assert res.returncode != 0 and "cannot be terminated" in res.stderr

    res = project.run([sys.executable, failing, "dagster", "trigger", "--wait", "--run-id-file", id_file])
    assert res.returncode != 0 and "failed on Dagster" in res.stderr, res
    res = project.run([sys.executable, failing, "dagster", "status", open(id_file).read()])
    assert res.stdout.strip() == "FAILED", res

    res = project.run([sys.executable, linear, "dagster", "list", "--all"])
    assert res.stdout.splitlines() == ["FailingFlow FailingFlow %s" % failing_defs, "LinearFlow LinearFlow %s" % defs]
    res = project.run([sys.executable, linear, "dagster", "list"])
    assert res.stdout.splitlines() == ["LinearFlow LinearFlow %s" % defs]
    res = project.run([sys.executable, linear, "dagster", "delete"])
    assert res.returncode == 0, res
    assert deployments.Workspace(project.home).deployments() == {"FailingFlow": failing_defs}
    assert os.path.exists(defs), "delete leaves the definitions file"
    res = project.run([sys.executable, linear, "dagster", "status", run_id])
    assert res.returncode != 0 and "no deployment named LinearFlow" in res.stderr


def test_resume_clones_finished_tasks_and_reruns_the_rest(project, deploy, daemon, tmp_path):
    deployed = deploy("resume_flow.py")
    daemon.start()
    marker = tmp_path / "marker"
    first = deployed.trigger(marker=str(marker))
    assert finish(first) == "FAILED"
    origin = first.run
    marker.write_text("now body[1] succeeds")

    resumed = deployed.resume(origin_run_id=origin.id)
    assert finish(resumed) == "SUCCEEDED", daemon.log_tail()
    run = resumed.run
    assert run.id != origin.id and run.data.result == [0, 10, 20]
    assert run.data.marker == str(marker), "parameters carry over from the origin run"
    assert origin_of(run["start"].task) == (origin.id, "t")
    body, origin_body = {t.id: t for t in run["body"]}, {t.id: t for t in origin["body"]}
    for tid in ("t-0", "t-2"):
        assert origin_of(body[tid]) == (origin.id, tid)
        assert body[tid].data.pid == origin_body[tid].data.pid, "a cloned task is not executed again"
    assert origin_of(body["t-1"]) is None
    assert origin_of(run["join"].task) is None

    # Resuming from a step clones everything before it and runs the step and what follows again.
    again = deployed.resume(origin_run_id=run.id, step_to_rerun="after")
    assert finish(again) == "SUCCEEDED"
    rerun = again.run
    assert sorted(origin_of(t) for t in rerun["body"]) == [(run.id, "t-0"), (run.id, "t-1"), (run.id, "t-2")]
    assert origin_of(rerun["join"].task) == (run.id, "t")
    assert origin_of(rerun["after"].task) is None
    assert rerun["after"].task.data.ran_in == rerun.id and rerun.data.result == [0, 10, 20]
    with deployments.instance(project.home) as inst:
        tags = inst.get_run_by_id(again.dagster_run_id).tags
    assert (tags["metaflow/origin_run_id"], tags["metaflow/resume_step"]) == (run.id, "after")


def test_resume_after_a_failed_linear_step_reruns_only_from_it(project, deploy, daemon, tmp_path):
    deployed = deploy("resume_linear_flow.py")
    daemon.start()
    marker = tmp_path / "marker"
    first = deployed.trigger(marker=str(marker))
    assert finish(first) == "FAILED"
    origin = first.run
    assert not origin.successful and "end" not in [s.id for s in origin]
    marker.write_text("b succeeds now")
    resumed = deployed.resume(origin_run_id=origin.id)
    assert finish(resumed) == "SUCCEEDED", daemon.log_tail()
    run = resumed.run
    assert run.data.result == "resumed"
    for step, pid in (("start", "pid_start"), ("a", "pid_a")):
        assert origin_of(run[step].task) == (origin.id, "t")
        assert getattr(run[step].task.data, pid) == getattr(origin[step].task.data, pid), "not executed again"
    assert origin_of(run["b"].task) is None and origin_of(run["end"].task) is None


def _graphql(url, query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(url + "/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]


def _served_jobs(url):
    """{location: sorted job names} the webserver at ``url`` serves."""
    data = _graphql(url, "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {"
                         " ... on RepositoryLocation { repositories { jobs { name } } } } } } } }")
    return {e["name"]: sorted(j["name"] for r in (e["locationOrLoadError"] or {}).get("repositories", ())
                              for j in r["jobs"])
            for e in data["workspaceOrError"]["locationEntries"]}


def test_running_dagster_serves_new_deployments_and_triggered_runs(project):
    """The serving line `create` prints, run as printed (plus a port), serves every deployment: one created
    while it runs is served as soon as `create` returns, and one deleted is gone when `delete` returns."""
    _, res = project.create(flow_path("linear_flow.py"))
    serve = next(line for line in res.stderr.splitlines() if line.startswith("Serve every deployed flow with: "))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = "http://127.0.0.1:%d" % port
    argv = serve.split(": ", 1)[1].split() + ["-p", str(port)]
    with open(os.path.join(project.workdir, "dagster-dev.log"), "w") as log:
        dev = subprocess.Popen(
            argv, cwd=project.workdir, env=project.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for(lambda: webserver_up(url) and _served_jobs(url) == {"metaflow": ["LinearFlow"]}, 180,
                 "dagster dev to serve LinearFlow")
        _, res = project.create(flow_path("failing_flow.py"), out="failing.py")
        assert "The Dagster webserver at %s serves it: %s/locations/FailingFlow@metaflow/jobs/FailingFlow" % (
            url, url) in res.stderr, res
        assert _served_jobs(url) == {"metaflow": ["FailingFlow", "LinearFlow"]}

        id_file = os.path.join(project.workdir, "run_id")
        res = project.run(
            [sys.executable, flow_path("linear_flow.py"), "dagster", "trigger", "--wait", "--run-id-file", id_file]
        )
        assert res.returncode == 0, res
        link = next(w for w in res.stderr.split() if w.startswith(url + "/runs/"))
        dagster_run_id = link.rsplit("/", 1)[1]
        run = _graphql(url, "query($id: ID!) { runOrError(runId: $id) { ... on Run { status jobName tags { key value } } } }",
                       {"id": dagster_run_id})["runOrError"]
        assert (run["status"], run["jobName"]) == ("SUCCESS", "LinearFlow")
        assert {"key": "metaflow/run_id", "value": open(id_file).read()} in run["tags"]
        with urllib.request.urlopen(link, timeout=30) as page:
            assert page.status == 200

        res = project.run([sys.executable, flow_path("failing_flow.py"), "dagster", "delete"])
        assert res.returncode == 0, res
        assert _served_jobs(url) == {"metaflow": ["LinearFlow"]}
    finally:
        os.killpg(dev.pid, signal.SIGTERM)
        try:
            dev.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
