"""The seams between Metaflow, Dagster and the user, driven the way users drive them.

A real `dagster dev -w $DAGSTER_HOME/metaflow/workspace.yaml` (webserver, daemon, code server) on a free port
that the commands find by themselves; `create` followed at once by `trigger`, from the CLI and the Deployer;
the UI's buttons pressed by sending the GraphQL mutations they send; results read through the Metaflow client
(`Run`, `Task`, `.stdout`, `python flow.py logs`) and the Dagster instance (runs, events, captured logs).
"""

import json
import os
import socket
import subprocess
import sys
import urllib.request

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from metaflow import Deployer, Flow, Run, Task, namespace

from metaflow_dagster import deployments
from tests.helpers import DagsterDev, dagster_dev, flow_path, wait_for

RUN_TIMEOUT = 300


@pytest.fixture
def server(project):
    dev = DagsterDev(project)
    yield dev
    dev.stop()


def graphql(url, query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    req = urllib.request.Request(url + "/graphql", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as resp:
        answer = json.loads(resp.read())
    assert not answer.get("errors"), answer
    return answer["data"]


def finished(project, dagster_run_id, timeout=RUN_TIMEOUT):
    """The Dagster run once it has finished (a bounded wait on its status)."""
    def done():
        with DagsterInstance.from_config(project.home) as inst:
            run = inst.get_run_by_id(dagster_run_id)
            return run if run is not None and run.is_finished else None

    return wait_for(done, timeout, "Dagster run %s to finish" % dagster_run_id)


def cli(project, fixture, *args, **env):
    return project.run([sys.executable, flow_path(fixture), *args], **env)


def triggered(res):
    """(Metaflow pathspec, Dagster run id) printed by `dagster trigger`."""
    line = next(line for line in res.stderr.splitlines() if line.startswith("Triggered "))
    pathspec = line.split("(run ", 1)[1].split(",", 1)[0]
    return pathspec, line.rsplit("Dagster run ", 1)[1].rstrip(").")


# ----- 1. create, then trigger at once ---------------------------------------------------------------------

PAIRS = [  # (fixture, create options, trigger parameters, how: "cli" or "deployer", expected end artifact)
    ("linear_flow.py", {}, {"alpha": "2.5", "greeting": "one"}, "cli", "one:4:2.5"),
    ("typed_params_flow.py", {}, {"count": 3}, "deployer", "hello:3:0.5:False:['k']"),
    ("split3_flow.py", {}, {}, "cli", [11, 12, 13]),
    ("seams_flow.py", {}, {"marker": "MARKER"}, "deployer", [0, 10, 20]),
    ("echo_flow.py", {}, {}, "cli", None),
    ("switch_flow.py", {}, {}, "deployer", ["start", "long1", "long2", "merge", "end"]),
    ("linear_flow.py", {"tags": ["redeployed"]}, {"greeting": "two"}, "deployer", "two:4:0.5"),  # a re-deploy
    ("single_step_flow.py", {}, {}, "cli", "alone"),
    ("typed_params_flow.py", {"max_workers": 4}, {"count": 9}, "cli", "hello:9:0.5:False:['k']"),  # again
    ("custom_start_end_flow.py", {}, {}, "deployer", 42),
]


def _create_args(options):
    """The `create` command line of Deployer-style create options."""
    args = []
    for key, value in options.items():
        flag = "--" + ("tag" if key == "tags" else key.replace("_", "-"))
        args += [a for v in (value if isinstance(value, list) else [value]) for a in (flag, str(v))]
    return args


def test_create_then_trigger_at_once_ten_times_while_dagster_dev_runs(project, server, tmp_path, monkeypatch):
    """10 create -> trigger pairs, each trigger right after its create returns, on a server started before
    any of them on a port no one told the commands: different flows, re-deploys of a served flow, from the
    CLI and from the Deployer. Every run succeeds, with the code the last create deployed."""
    marker = tmp_path / "marker"
    marker.write_text("present")
    server.start()
    monkeypatch.setenv("DAGSTER_HOME", project.home)
    namespace(None)
    succeeded = []
    for fixture, options, params, how, expected in PAIRS:
        params = {k: (str(marker) if v == "MARKER" else v) for k, v in params.items()}
        defs = os.path.join(project.workdir, fixture)
        if how == "cli":
            project.create(flow_path(fixture), out=fixture, args=_create_args(options))
            res = cli(project, fixture, "dagster", "trigger", *[a for k, v in params.items() for a in ("--" + k, str(v))])
            assert res.returncode == 0, res
            pathspec, dagster_run_id = triggered(res)
        else:
            deployer = Deployer(flow_path(fixture), show_output=False, cwd=project.workdir).dagster()
            run = deployer.create(file=defs, **options).trigger(**params)
            pathspec, dagster_run_id = run.pathspec, run.dagster_run_id
            assert run.dagster_ui_url == "%s/runs/%s" % (server.url, dagster_run_id)
        drun = finished(project, dagster_run_id)
        assert drun.status == DagsterRunStatus.SUCCESS, "%s %s\n%s" % (fixture, how, server.log_tail())
        mf_run = Run(pathspec)
        assert mf_run.successful and mf_run.finished
        if expected is not None:
            assert mf_run.data.result == expected, fixture
        assert drun.tags["metaflow/deployment"] == deployments.loc.file_digest(defs), "the code create deployed"
        succeeded.append(fixture)
    print("create -> trigger at once: %d of %d runs succeeded" % (len(succeeded), len(PAIRS)))
    assert len(succeeded) == len(PAIRS)
    assert "redeployed" in Flow("LinearFlow").latest_run.tags, "the re-deploy's --tag reached its run"


def _port_free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_a_webserver_on_dagsters_default_port_is_found_too(project):
    if not _port_free(3000):
        pytest.skip("port 3000 is taken on this machine")
    dev = DagsterDev(project, port=3000).start()
    try:
        _, res = project.create(flow_path("linear_flow.py"))
        assert "The Dagster webserver at http://127.0.0.1:3000 serves it" in res.stderr, res
        res = cli(project, "linear_flow.py", "dagster", "trigger", "--wait")
        assert res.returncode == 0, res
        assert "http://127.0.0.1:3000/runs/" in res.stderr
    finally:
        dev.stop()


def _runs(project):
    with DagsterInstance.from_config(project.home) as inst:
        return inst.get_runs()


def test_no_run_is_submitted_for_a_location_the_server_does_not_serve(project):
    """Without a server, and with one that serves the file some other way (`dagster dev -f`), `trigger`
    submits nothing and says how to serve the deployments."""
    defs, _ = project.create(flow_path("linear_flow.py"))
    serve = "dagster dev -w %s" % os.path.join(project.home, "metaflow", "workspace.yaml")
    res = cli(project, "linear_flow.py", "dagster", "trigger")
    assert res.returncode != 0 and "no Dagster webserver serves DAGSTER_HOME=%s" % project.home in res.stderr, res
    assert serve in res.stderr and not _runs(project)
    with dagster_dev(project, [defs]) as url:
        res = cli(project, "linear_flow.py", "dagster", "trigger")
        assert res.returncode != 0, res
        assert "the Dagster webserver at %s does not serve the deployments of DAGSTER_HOME=%s" % (url, project.home) \
            in res.stderr, res
        assert serve in res.stderr and "defs.py" in res.stderr
        assert not _runs(project)


# ----- 2. Dagster's "Re-execute" keeps the Metaflow run whole ------------------------------------------------

REEXECUTE = """mutation($r: ReexecutionParams, $e: ExecutionParams) {
  launchPipelineReexecution(reexecutionParams: $r, executionParams: $e) {
    __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""


def reexecute(url, parent, strategy=None, step_keys=None, location="metaflow", repository="SeamsFlow", config=None):
    """Press the UI's Re-execute: FROM_FAILURE / ALL_STEPS (``strategy``) or the selected ``step_keys``, which
    the UI sends as execution params (here without the parent's tags: the root's are read back)."""
    if strategy:
        variables = {"r": {"parentRunId": parent.run_id, "strategy": strategy}}
    else:
        variables = {"e": {
            "selector": {"repositoryLocationName": location, "repositoryName": repository, "jobName": parent.job_name},
            "runConfigData": config or parent.run_config,
            "stepKeys": step_keys,
            "executionMetadata": {"parentRunId": parent.run_id, "rootRunId": parent.root_run_id or parent.run_id},
        }}
    data = graphql(url, REEXECUTE, variables)["launchPipelineReexecution"]
    assert data["__typename"] == "LaunchRunSuccess", data
    return data["run"]["runId"]


def attempts(run, step):
    return {t.id: t.current_attempt for t in run[step]}


def test_reexecution_from_the_ui_continues_the_metaflow_run(project, server, tmp_path):
    marker = tmp_path / "marker"
    project.create(flow_path("seams_flow.py"))
    server.start()
    namespace(None)
    res = cli(project, "seams_flow.py", "dagster", "trigger", "--marker", str(marker), "--wait")
    assert res.returncode != 0, res
    pathspec, parent_id = triggered(res)
    marker.write_text("present")
    with DagsterInstance.from_config(project.home) as inst:
        parent = inst.get_run_by_id(parent_id)

    before = {r.id for r in Flow("SeamsFlow").runs()}
    child = finished(project, reexecute(server.url, parent, "FROM_FAILURE"))
    assert child.status == DagsterRunStatus.SUCCESS, server.log_tail()
    run = Run(pathspec)
    assert run.successful and run.finished and run.end_task.data.result == [0, 10, 20]
    failed_then_fixed = Task(pathspec + "/work/t-1")
    assert (failed_then_fixed.finished, failed_then_fixed.successful) == (True, True)
    assert failed_then_fixed.current_attempt == 1 and failed_then_fixed.exception is None
    assert failed_then_fixed["_task_ok"].data is True
    assert attempts(run, "work") == {"t-0": 0, "t-1": 1, "t-2": 0}, "only the failed item ran again"
    assert {r.id for r in Flow("SeamsFlow").runs()} == before, "no second, partial Metaflow run"

    # ALL_STEPS: every task is a new attempt of the same run.
    again = finished(project, reexecute(server.url, child, "ALL_STEPS"))
    assert again.status == DagsterRunStatus.SUCCESS
    run = Run(pathspec)
    assert attempts(run, "work") == {"t-0": 1, "t-1": 2, "t-2": 1} and attempts(run, "start") == {"t": 1}
    assert run.successful and run.end_task.current_attempt == 1
    # Selected steps, sent as execution params without the parent's tags (as the UI may).
    selected = finished(project, reexecute(server.url, again, step_keys=["end"]))
    assert selected.status == DagsterRunStatus.SUCCESS
    assert "metaflow/run_id" not in selected.tags or selected.tags["metaflow/run_id"] == run.id
    assert Run(pathspec).end_task.current_attempt == 2 and Run(pathspec).successful

    # Metaflow's own resume works on the run afterwards, cloning its tasks.
    res = project.run([sys.executable, flow_path("seams_flow.py"), "resume", "--origin-run-id", run.id])
    assert res.returncode == 0, res
    resumed = Flow("SeamsFlow").latest_run
    assert resumed.id != run.id and resumed.successful and resumed.data.result == [0, 10, 20]


def test_reexecution_of_a_launchpad_run_continues_its_metaflow_run(project, server, tmp_path):
    """A run launched from the Launchpad has no metaflow/run_id tag: its re-execution must still continue the
    Metaflow run derived from the root run, not start a new, partial one (no start step)."""
    marker = tmp_path / "marker"
    project.create(flow_path("seams_flow.py"))
    server.start()
    namespace(None)
    launched = graphql(server.url, """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
        __typename ... on LaunchRunSuccess { run { runId } } } }""", {"p": {
        "selector": {"repositoryLocationName": "metaflow", "repositoryName": "SeamsFlow", "jobName": "SeamsFlow"},
        "runConfigData": {"ops": {"start": {"config": {"marker": str(marker)}}}},
    }})["launchRun"]
    parent = finished(project, launched["run"]["runId"])
    assert parent.status == DagsterRunStatus.FAILURE and "metaflow/run_id" not in parent.tags
    before = {r.id for r in Flow("SeamsFlow").runs()}
    marker.write_text("present")
    child = finished(project, reexecute(server.url, parent, "FROM_FAILURE"))
    assert child.status == DagsterRunStatus.SUCCESS, server.log_tail()
    assert {r.id for r in Flow("SeamsFlow").runs()} == before, "no new, partial Metaflow run"
    run = Run("SeamsFlow/dagster-" + parent.run_id.replace("-", "")[:20])
    assert run.successful and "start" in [s.id for s in run] and run.end_task.data.result == [0, 10, 20]
    assert attempts(run, "work") == {"t-0": 0, "t-1": 1, "t-2": 0}
    with DagsterInstance.from_config(project.home) as inst:  # status and the Deployer find the latest run
        assert deployments.find_run(inst, "SeamsFlow", run.id).run_id == child.run_id


# ----- 3. logs where each side looks, and 4. the failure reason ----------------------------------------------


def test_logs_and_failure_reasons_where_each_side_looks(project, server, tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("DAGSTER_HOME", project.home)
    namespace(None)
    server.start()
    deployed = Deployer(flow_path("seams_flow.py"), show_output=False, cwd=project.workdir).dagster().create()
    failed = deployed.trigger(marker=str(marker))
    failed.wait_for_completion(check_interval=1, timeout=RUN_TIMEOUT)
    assert failed.status == "FAILED"
    # The failure reason, for the Deployer's run object, `trigger --wait` and `status`: step, task, exception.
    run_id = failed.pathspec.split("/")[1]
    for reason in (
        failed.failure,
        cli(project, "seams_flow.py", "dagster", "status", run_id).stderr,
    ):
        assert "step work[1] failed: ValueError: item 1 needs %s" % marker in reason, reason
        assert "at seams_flow.py:24, in work" in reason
        assert "task SeamsFlow/%s/work/t-1, attempt 0" % run_id in reason
    res = cli(project, "seams_flow.py", "dagster", "trigger", "--marker", str(marker), "--wait")
    assert res.returncode != 0 and "step work[1] failed: ValueError: item 1 needs" in res.stderr, res
    # In the UI, the STEP_FAILURE leads with the user's exception.
    with DagsterInstance.from_config(project.home) as inst:
        failures = [r.event_log_entry.dagster_event for r in inst.get_records_for_run(
            failed.dagster_run_id, of_type=DagsterEventType.STEP_FAILURE).records]
    assert [f.step_key for f in failures] == ["work[1]"]
    description = failures[0].step_failure_data.user_failure_data.description
    assert description.startswith("ValueError: item 1 needs %s\n  at seams_flow.py:24, in work" % marker)

    marker.write_text("present")
    ok = deployed.trigger(marker=str(marker))
    ok.wait_for_completion(check_interval=1, timeout=RUN_TIMEOUT)
    assert ok.status == "SUCCEEDED" and ok.failure is None
    run = ok.run
    # Metaflow: each task's own output in Task.stdout/.stderr and `python flow.py logs`, as after a native run.
    for task in run["work"]:
        i = task.index
        assert task.stdout == "work %d says out\n" % i and task.stderr == "work %d says err\n" % i
    assert run["start"].task.stdout == "start says out\n" and run["end"].task.stdout == "end says out\n"
    res = project.run([sys.executable, flow_path("seams_flow.py"), "logs", "%s/work" % run.id])
    assert res.returncode == 0, res
    assert all("work %d says out" % i in res.stdout for i in range(3)), res
    # The failed attempt's traceback is in its task's stderr too.
    failed_task = Task("%s/work/t-1" % failed.pathspec)
    assert "ValueError: item 1 needs" in failed_task.stderr and "work 1 says err" in failed_task.stderr
    # Dagster: each step (each mapped op of the foreach) has captured logs of its own; each line is one event.
    with DagsterInstance.from_config(project.home) as inst:
        manager = inst.compute_log_manager
        captured = {}
        for e in inst.all_logs(ok.dagster_run_id):
            if e.dagster_event is not None and e.dagster_event.event_type == DagsterEventType.LOGS_CAPTURED:
                data = e.dagster_event.logs_captured_data
                assert len(data.step_keys) == 1, data.step_keys
                log = manager.get_log_data(manager.build_log_key_for_run(ok.dagster_run_id, data.file_key))
                captured[data.step_keys[0]] = (log.stdout.decode(), log.stderr.decode())
        lines = [e.user_message for e in inst.all_logs(ok.dagster_run_id) if "says" in (e.user_message or "")]
    assert sorted(captured) == ["end", "join", "start", "work[0]", "work[1]", "work[2]"]
    for i in range(3):
        assert captured["work[%d]" % i] == ("work %d says out\n" % i, "work %d says err\n" % i)
    assert sorted(lines) == sorted(["start says out", "end says out"] + ["work %d says %s" % (i, s)
                                                                          for i in range(3) for s in ("out", "err")])


def test_a_run_that_fails_before_metaflow_records_it_says_why(project, tmp_path, monkeypatch):
    """A run terminated while queued (no daemon to start it) is FAILED and has no Metaflow run: `.run` says
    why rather than staying None."""
    from metaflow.runner.deployer import DeployedFlow

    project.create(flow_path("linear_flow.py"))
    webserver = subprocess.Popen(
        [sys.executable, "-m", "dagster_webserver", "-w", os.path.join(project.home, "metaflow", "workspace.yaml"),
         "-p", str(_free())], cwd=project.workdir, env=project.env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        monkeypatch.setenv("DAGSTER_HOME", project.home)
        wait_for(lambda: deployments.find_webserver(project.home), 180, "the webserver (no daemon) to answer")
        res = cli(project, "linear_flow.py", "dagster", "trigger")
        assert res.returncode == 0 and "No Dagster daemon is running" in res.stderr, res
        pathspec, _ = triggered(res)
        queued = DeployedFlow.get_triggered_run("LinearFlow", pathspec.split("/")[1], impl="dagster")
        assert queued.status == "PENDING" and queued.run is None
        assert queued.terminate()
        assert queued.status == "FAILED" and queued.failure == "the run was terminated"
        with pytest.raises(Exception, match="failed on Dagster before Metaflow recorded it: the run was terminated"):
            queued.run  # noqa: B018
    finally:
        os.killpg(webserver.pid, 9)
        webserver.wait(30)


def _free():
    from tests.helpers import free_port

    return free_port()


# ----- 5. bad input gets a clear answer ---------------------------------------------------------------------


def test_bad_parameter_values_are_refused_before_anything_is_launched(project, server, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", project.home)
    server.start()
    deployed = Deployer(flow_path("typed_params_flow.py"), show_output=False, cwd=project.workdir).dagster().create()
    with pytest.raises(Exception, match="parameter spec of flow TypedParamsFlow: '\\{bad' is not valid JSON"):
        deployed.trigger(spec="{bad")
    res = cli(project, "typed_params_flow.py", "dagster", "trigger", "--count", "many")
    assert res.returncode != 0 and "count" in res.stderr, res
    res = cli(project, "typed_params_flow.py", "dagster", "trigger", "--spec", "{bad")
    assert res.returncode != 0 and "spec" in res.stderr, res
    assert not _runs(project)
    # A JSON string is a JSON value, as for `run`.
    res = cli(project, "typed_params_flow.py", "dagster", "trigger", "--spec", '"hello"', "--wait")
    assert res.returncode == 0, res
    namespace(None)
    assert Run(triggered(res)[0]).data.spec == "hello"


def test_foreach_split_limit_is_metaflows(project, tmp_path):
    """As `python flow.py run`: more than 100 splits fail the run naming the step, unless --max-num-splits
    (of `create` here, of `run` natively) allows them."""
    defs, _ = project.create(flow_path("wide_flow.py"))
    drun, res = project.execute(defs, "WideFlow", config={"ops": {"start": {"config": {"width": 101}}}}, check=False)
    assert drun.status == DagsterRunStatus.FAILURE
    with DagsterInstance.from_config(project.home) as inst:
        reason = deployments.failure_reason(inst, drun.run_id)
    assert "Foreach in step start" in reason and "yielded 101 child steps which is more than the current maximum " \
        "of 100 children" in reason, reason
    native = project.run([sys.executable, flow_path("wide_flow.py"), "run", "--width", "101"])
    assert native.returncode != 0 and "more than the current maximum of 100" in native.stderr + native.stdout
    defs, _ = project.create(flow_path("wide_flow.py"), out="small.py", args=["--max-num-splits", "2"])
    drun, _ = project.execute(defs, "WideFlow", check=False)
    assert drun.status == DagsterRunStatus.FAILURE, "3 splits are more than 2"
    defs, _ = project.create(flow_path("wide_flow.py"), out="wide.py", args=["--max-num-splits", "4"])
    drun, res = project.execute(defs, "WideFlow", config={"ops": {"start": {"config": {"width": 4}}}})
    assert drun.status == DagsterRunStatus.SUCCESS, res


def test_trigger_wait_prints_no_repeated_dagster_warnings(tmp_path):
    """A Dagster home without dagster.yaml: `create` writes one (and says so), so no command warns about it,
    let alone once per poll of `trigger --wait`."""
    from tests.helpers import DagsterProject

    home = tmp_path / "bare_home"
    home.mkdir()
    project = DagsterProject(str(tmp_path), str(home))
    _, res = project.create(flow_path("linear_flow.py"))
    assert "Wrote %s" % (home / "dagster.yaml") in res.stderr
    dev = DagsterDev(project).start()
    try:
        res = cli(project, "linear_flow.py", "dagster", "trigger", "--wait")
        assert res.returncode == 0, res
        assert "dagster.yaml" not in res.stderr and "Warning" not in res.stderr, res.stderr
    finally:
        dev.stop()
