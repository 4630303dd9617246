"""The executor of generated jobs (issue #7): ops run as threads of the run worker, Metaflow tasks fork from
a single-threaded zygote, and anything that needs its own interpreter runs as a subprocess.

Each test compiles a fixture flow, runs it with `dagster job execute` (or Dagster's Python API, as a user's
script does) on a persistent instance, and checks the outcome through the Metaflow client and the instance.
"""

import sys

from dagster import DagsterEventType, DagsterRunStatus

from tests.helpers import REEXECUTE_FROM_FAILURE, flow_path, metaflow_run


def step_keys(project, drun, event_type):
    return sorted(
        e.dagster_event.step_key
        for e in project.run_logs(drun.run_id)
        if e.dagster_event is not None and e.dagster_event.event_type == event_type
    )


def failure_descriptions(project, drun):
    return [
        e.dagster_event.step_failure_data.user_failure_data.description
        for e in project.run_logs(drun.run_id)
        if e.dagster_event is not None and e.dagster_event.event_type == DagsterEventType.STEP_FAILURE
    ]


def test_a_killed_task_fails_its_own_op_only(project):
    defs, _ = project.create(flow_path("crash_flow.py"))
    drun, res = project.execute(defs, "CrashFlow", check=False)
    assert drun.status == DagsterRunStatus.FAILURE, res
    assert step_keys(project, drun, DagsterEventType.STEP_FAILURE) == ["work[2]"]
    # Its siblings, still running when it was killed, finished; the run worker lived on to end the run.
    assert step_keys(project, drun, DagsterEventType.STEP_SUCCESS) == ["start", "work[0]", "work[1]", "work[3]"]
    assert step_keys(project, drun, DagsterEventType.RUN_FAILURE) == [None]
    (description,) = failure_descriptions(project, drun)
    assert "failed with exit code -9" in description
    run = metaflow_run("CrashFlow", drun)
    assert {t.id: t.data.out for t in run["work"] if t.successful} == {"t-0": 0, "t-1": 10, "t-3": 30}
    assert not run.successful


def ran_as(run, step):
    """'subprocess' if the task of ``step`` ran as `python flow.py ... step STEP ...`, else 'fork'."""
    argv = run[step].task.data.argv
    return "subprocess" if argv[1].endswith("where_flow.py") and "step" in argv else "fork"


def test_tasks_fork_unless_they_need_their_own_interpreter(project, monkeypatch):
    defs, _ = project.create(flow_path("where_flow.py"))
    drun, res = project.execute(defs, "WhereFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, res
    run = metaflow_run("WhereFlow", drun)
    # A step setting METAFLOW_* variables needs Metaflow configured afresh: a new interpreter.
    assert {s: ran_as(run, s) for s in ("start", "own_settings", "end")} == {
        "start": "fork", "own_settings": "subprocess", "end": "fork"
    }
    monkeypatch.setenv("METAFLOW_DAGSTER_SUBPROCESS", "1")
    drun, res = project.execute(defs, "WhereFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, res
    run = metaflow_run("WhereFlow", drun)
    assert {ran_as(run, s) for s in ("start", "own_settings", "end")} == {"subprocess"}


def _reexecute_flaky_flow(project, defs, parent, marker):
    """Let FlakyFlow's `b` succeed, re-execute its failed run ``parent`` from failure: only `b` and `end` run, in
    the same Metaflow run, which ends with z == 3."""
    marker.write_text("now b succeeds")
    res = project.run([sys.executable, "-c", REEXECUTE_FROM_FAILURE, defs, "FlakyFlow", parent.run_id])
    assert res.returncode == 0, res
    child = project.latest_run("FlakyFlow")
    assert child.parent_run_id == parent.run_id and child.status == DagsterRunStatus.SUCCESS
    assert step_keys(project, child, DagsterEventType.STEP_SUCCESS) == ["b", "end"]
    run = metaflow_run("FlakyFlow", child)
    assert run.id == metaflow_run("FlakyFlow", parent).id and run.end_task.data.z == 3


def test_reexecution_from_failure_runs_the_failed_step_and_what_follows(project, tmp_path):
    marker = tmp_path / "b.ok"
    defs, _ = project.create(flow_path("flaky_flow.py"))
    config = {"ops": {"start": {"config": {"marker": str(marker)}}}}
    parent, res = project.execute(defs, "FlakyFlow", config=config, check=False)
    assert parent.status == DagsterRunStatus.FAILURE, res
    _reexecute_flaky_flow(project, defs, parent, marker)


def test_task_output_reaches_the_runs_captured_logs(project, monkeypatch):
    """The UI's stdout/stderr of each step hold what that step's task printed, forked or run as a subprocess,
    and the terminal shows each line once (as the op's log record)."""
    defs, _ = project.create(flow_path("echo_flow.py"))
    for subprocess_env in ("0", "1"):
        monkeypatch.setenv("METAFLOW_DAGSTER_SUBPROCESS", subprocess_env)
        drun, res = project.execute(defs, "EchoFlow")
        assert drun.status == DagsterRunStatus.SUCCESS, res
        captured = {}
        with project.instance() as inst:
            manager = inst.compute_log_manager
            for e in project.run_logs(drun.run_id):
                if e.dagster_event is not None and e.dagster_event.event_type == DagsterEventType.LOGS_CAPTURED:
                    data = e.dagster_event.logs_captured_data
                    log_key = manager.build_log_key_for_run(drun.run_id, data.file_key)  # as the UI reads them
                    assert manager.is_capture_complete(log_key)
                    log = manager.get_log_data(log_key)
                    (step,) = data.step_keys
                    captured[step] = (log.stdout.decode(), log.stderr.decode())
        assert captured == {"start": ("start says out\n", "start says err\n"), "end": ("end says out\n", "")}
        terminal = res.stdout + res.stderr
        for line in ("start says out", "start says err", "end says out"):
            assert terminal.count(line) == 1, terminal


def test_without_one_dagster_internal_jobs_run_on_dagsters_multiprocess_executor(project, tmp_path):
    """The threaded executor drives Dagster internals, all checked when a job is defined (the wall,
    runtime/executor.py). Here one of them is removed from Dagster in the run's process (a sitecustomize
    deletes reverse_cron_string_iterator, which Dagster's own multiprocess executor does not use): the job
    warns, naming it, and runs on Dagster's multiprocess executor, retries and attempt numbers included."""
    from metaflow_dagster.runtime.executor import _DAGSTER_INTERNALS, _threaded_executor_problem

    assert _threaded_executor_problem() is None
    assert ("dagster._utils.schedules", "reverse_cron_string_iterator", ()) in _DAGSTER_INTERNALS
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import dagster._utils.schedules as schedules\ndel schedules.reverse_cron_string_iterator\n")
    defs, _ = project.create(flow_path("retry_flow.py"))
    argv = [sys.executable, "-m", "dagster", "job", "execute", "-f", defs, "-j", "RetryFlow"]
    res = project.run(argv, PYTHONPATH=str(site))
    assert res.returncode == 0, res
    assert "has no dagster._utils.schedules.reverse_cron_string_iterator" in res.stderr, res.stderr[-3000:]
    drun = project.latest_run("RetryFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, res
    engine = [e.message for e in project.run_logs(drun.run_id)
              if e.dagster_event is not None and e.dagster_event.event_type == DagsterEventType.ENGINE_EVENT]
    assert any("multiprocess executor" in m for m in engine), engine
    assert not any("as threads of process" in m for m in engine), engine
    run = metaflow_run("RetryFlow", drun)
    assert sorted(t.current_attempt for t in run["leaf"]) == [2, 2, 2, 2]
    assert run.end_task.data.result == ([2, 2, 2, 2], "caught by @catch")


def test_multiprocess_executor_keeps_logs_failure_reasons_and_reexecution(project, tmp_path):
    """`create --executor multiprocess`: Dagster's own executor, a process per op. The failed step is named with
    its task's exception, the task's output is in Metaflow's logs, and re-execution from failure finishes the
    same Metaflow run."""
    marker = tmp_path / "b.ok"
    defs, _ = project.create(flow_path("flaky_flow.py"), args=["--executor", "multiprocess"])
    assert '"executor": {"kind": "multiprocess"' in open(defs).read()
    config = {"ops": {"start": {"config": {"marker": str(marker)}}}}
    parent, res = project.execute(defs, "FlakyFlow", config=config, check=False)
    assert parent.status == DagsterRunStatus.FAILURE, res
    engine = [e.message for e in project.run_logs(parent.run_id)
              if e.dagster_event is not None and e.dagster_event.event_type == DagsterEventType.ENGINE_EVENT]
    assert any("multiprocess" in m.lower() for m in engine), engine
    (description,) = failure_descriptions(project, parent)
    assert "b fails until %s exists" % marker in description, description
    failed = metaflow_run("FlakyFlow", parent)["b"].task
    assert "b fails until" in failed.stderr
    _reexecute_flaky_flow(project, defs, parent, marker)
