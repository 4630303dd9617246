"""Step decorators and `create` options behave on Dagster as under `python flow.py run` (issue #3).

Each test compiles a fixture flow, runs it with `dagster job execute` on a persistent instance and checks
the outcome through the Metaflow client and, where the item is about Dagster, through the instance.
"""

import os

from dagster import DagsterEventType, DagsterRunStatus

from tests.helpers import flow_literal, flow_path, metaflow_run


def messages(project, drun):
    """Log messages of the run, plus the description of every step failure."""
    out = []
    for e in project.run_logs(drun.run_id):
        out.append(e.user_message)
        ev = e.dagster_event
        if ev is not None and ev.event_type == DagsterEventType.STEP_FAILURE:
            data = ev.step_failure_data
            if data.user_failure_data is not None:
                out.append(data.user_failure_data.description or "")
            if data.error is not None:
                out.append(data.error.to_string())
    return "\n".join(out)


def test_retries_carry_the_attempt_number_at_every_foreach_level(project):
    defs, _ = project.create(flow_path("retry_flow.py"))
    drun, res = project.execute(defs, "RetryFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, res
    run = metaflow_run("RetryFlow", drun)
    assert run["start"].task.current_attempt == 1
    assert sorted(t.current_attempt for t in run["leaf"]) == [2, 2, 2, 2]
    attempts, caught = run.end_task.data.result
    assert attempts == [2, 2, 2, 2]
    assert caught == "caught by @catch"
    # Dagster retried the op and handed Metaflow its own attempt number.
    restarts = [
        e.dagster_event.step_key
        for e in project.run_logs(drun.run_id)
        if e.dagster_event is not None and e.dagster_event.event_type == DagsterEventType.STEP_RESTARTED
    ]
    assert sorted(restarts).count("start") == 1
    assert len([k for k in restarts if k.startswith("leaf[")]) == 8


def test_step_timeout_kills_the_task(project):
    defs, _ = project.create(flow_path("timeout_flow.py"))
    drun, _ = project.execute(defs, "TimeoutFlow", check=False)
    assert drun.status == DagsterRunStatus.FAILURE
    failed = [
        e
        for e in project.run_logs(drun.run_id)
        if e.dagster_event is not None and e.dagster_event.event_type == DagsterEventType.STEP_FAILURE
    ]
    assert [e.dagster_event.step_key for e in failed] == ["slow"]
    text = messages(project, drun)
    assert "timed out after 4 seconds" in text or "TimeoutException" in text
    run = metaflow_run("TimeoutFlow", drun)
    assert not run.successful and "end" not in [s.id for s in run]


def test_workflow_timeout_fails_the_whole_run(project):
    defs, _ = project.create(flow_path("sleepy_flow.py"), args=["--workflow-timeout", "6"])
    drun, _ = project.execute(defs, "SleepyFlow", check=False)
    assert drun.status == DagsterRunStatus.FAILURE
    assert "timed out after" in messages(project, drun)
    assert not metaflow_run("SleepyFlow", drun).successful


def test_decorators_project_tags_and_max_workers(project, monkeypatch):
    secrets = {
        "METAFLOW_SERVICE_AUTH_KEY": "auth-key-do-not-leak",
        "METAFLOW_SERVICE_HEADERS": '{"x-api-key": "header-do-not-leak"}',
        "AWS_ACCESS_KEY_ID": "AKIADONOTLEAK",
        "AWS_SECRET_ACCESS_KEY": "secret-access-do-not-leak",
    }
    defs, _ = project.create(
        flow_path("decorators_flow.py"),
        args=["--tag", "team:ml", "--max-workers", "1"],
        top=["--branch", "feature"],
        **secrets,
    )
    text = open(defs).read()
    for value in secrets.values():
        assert value not in text, "a secret reached the generated file"
    flow = flow_literal(defs)
    assert flow["job_name"] == "demo_proj_test_feature_DecoratorsFlow"
    drun, res = project.execute(defs, flow["job_name"])
    assert drun.status == DagsterRunStatus.SUCCESS, res
    run = metaflow_run("DecoratorsFlow", drun)
    start = run["start"].task.data
    assert start.env_value == "it works" and start.quoted == "a \"b\" 'c'"
    assert start.branch == "test.feature" and start.project == "demo_proj"
    assert "team:ml" in run.tags and "team:ml" in run.end_task.data.tags_seen
    assert "project_branch:test.feature" in run.system_tags
    # --max-workers 1: no two foreach tasks overlapped.
    spans = run["join"].task.data.spans
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(spans, spans[1:]))
    # @card output is readable with get_cards, from where the datastore lives (as after `python flow.py run`).
    from metaflow.cards import get_cards

    monkeypatch.chdir(os.environ["METAFLOW_DATASTORE_SYSROOT_LOCAL"])

    assert len(get_cards(run.end_task)) == 1
    # @resources appear as op tags.
    import runpy

    job = runpy.run_path(defs)["defs"].resolve_job_def(flow["job_name"])
    assert job.get_node_named("start").definition.tags["metaflow/resources/cpu"] == "1"


def test_with_decospec_applies_to_every_step(project):
    defs, _ = project.create(flow_path("linear_flow.py"), top=["--with", "retry:times=1,minutes_between_retries=0"])
    flow = flow_literal(defs)
    assert flow["options"]["with"] == ["retry:times=1,minutes_between_retries=0"]
    assert all(s["user_retries"] == 1 for s in flow["steps"].values())
    drun, res = project.execute(defs, "LinearFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, res


def test_stale_definitions_refuse_to_load(project, tmp_path):
    src = tmp_path / "editable_flow.py"
    src.write_text(open(flow_path("linear_flow.py")).read())
    defs, _ = project.create(str(src))
    with open(src, "a") as f:
        f.write("\n# edited after create\n")
    drun, res = project.execute(defs, "LinearFlow", check=False)
    assert res.returncode != 0
    assert "definitions are stale" in res.stdout + res.stderr
    assert drun is None
    assert os.path.exists(defs)
