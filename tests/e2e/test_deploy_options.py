"""Deploy-time options of `create` hold in every step on Dagster (issue #3): `--namespace`, `--with` given
twice, `--forward-env`, and the refusal of @conda/@pypi environments. Outcomes are read through the Metaflow client and the
Dagster instance.
"""

import os
import sys

import pytest
from dagster import DagsterEventType, DagsterRunStatus

from tests.helpers import flow_literal, flow_path, metaflow_run


def restarted_steps(project, drun):
    return sorted(
        e.dagster_event.step_key
        for e in project.run_logs(drun.run_id)
        if e.dagster_event is not None and e.dagster_event.event_type == DagsterEventType.STEP_RESTARTED
    )


def _runs_of_user(flow_name, user):
    """Ids of the runs of ``flow_name`` in namespace ``user:USER`` of this session's datastore (other test
    files, such as test_differential, run the same fixture flows in it)."""
    from metaflow import Flow, namespace
    from metaflow.exception import MetaflowNotFound

    namespace(None)
    try:
        return [r.id for r in Flow(flow_name) if "user:%s" % user in r.tags]
    except MetaflowNotFound:
        return []


def test_namespace_is_the_one_client_calls_in_steps_use(project, tmp_path):
    flow = flow_path("opt_namespace_flow.py")
    earlier = _runs_of_user("OptNamespaceFlow", "tester")
    # A run outside the namespace: `python flow.py run` tags it with the user only.
    run_id_file = tmp_path / "local_run_id"
    res = project.run([sys.executable, flow, "run", "--run-id-file", str(run_id_file)])
    assert res.returncode == 0, res
    local_id = run_id_file.read_text()

    defs, _ = project.create(flow, out="team_defs.py", args=["--namespace", "team:ns", "--tag", "team:ns"])
    assert flow_literal(defs)["options"]["namespace"] == "team:ns"
    drun, res = project.execute(defs, "OptNamespaceFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, res
    team = metaflow_run("OptNamespaceFlow", drun)
    assert team["start"].task.data.namespace_seen == "team:ns"
    assert team["end"].task.data.namespace_seen_end == "team:ns"
    assert team["start"].task.data.runs_seen == [team.id]  # the local run is not in team:ns

    # Without --namespace steps use the deploying user's namespace, where every run of this test is.
    defs, _ = project.create(flow, out="user_defs.py")
    drun, res = project.execute(defs, "OptNamespaceFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, res
    mine = metaflow_run("OptNamespaceFlow", drun)
    assert mine["start"].task.data.namespace_seen == "user:tester"
    assert mine["start"].task.data.runs_seen == sorted(earlier + [local_id, team.id, mine.id])


def test_empty_namespace_is_refused(project):
    out = os.path.join(project.workdir, "defs.py")
    _, res = project.create(flow_path("opt_namespace_flow.py"), args=["--namespace", ""], check=False)
    assert res.returncode != 0
    assert "--namespace is empty" in res.stderr, res
    assert not os.path.exists(out)


def test_parameter_named_like_a_trigger_option_is_refused(project):
    out = os.path.join(project.workdir, "defs.py")
    _, res = project.create(flow_path("opt_wait_param_flow.py"), check=False)
    assert res.returncode != 0
    assert "Parameter wait of flow WaitParamFlow has the name of the `dagster trigger` option --wait" in res.stderr
    assert not os.path.exists(out)


@pytest.mark.parametrize("fixture, message", [
    ("opt_origin_param_flow.py",
     "Parameter origin_run_id of flow OriginParamFlow has the name of the `dagster resume` option --origin-run-id"),
    ("opt_step_param_flow.py",
     "Parameter step-to-rerun of flow StepParamFlow has the name of the `dagster resume` argument STEP_TO_RERUN"),
])
def test_parameter_named_like_a_resume_option_is_refused(project, fixture, message):
    """Click passes options and arguments by keyword (`-` read as `_`), so `origin_run_id` collides with
    --origin-run-id and `step-to-rerun` with the STEP_TO_RERUN argument."""
    out = os.path.join(project.workdir, "defs.py")
    _, res = project.create(flow_path(fixture), check=False)
    assert res.returncode != 0
    assert message in res.stderr, res
    assert not os.path.exists(out)


def test_with_given_twice_applies_both_to_every_step(project):
    specs = ["retry:times=1,minutes_between_retries=0", 'environment:vars={"WITH_VAR": "from-with"}']
    defs, _ = project.create(flow_path("opt_with_flow.py"), top=["--with", specs[0], "--with", specs[1]])
    flow = flow_literal(defs)
    assert flow["options"]["with"] == specs
    assert {s["user_retries"] for s in flow["steps"].values()} == {1}
    drun, res = project.execute(defs, "OptWithFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, res
    # Every step failed its first attempt (so @retry reached each), then saw the @environment variable.
    assert restarted_steps(project, drun) == ["end", "middle", "start"]
    run = metaflow_run("OptWithFlow", drun)
    for step in ("start", "middle", "end"):
        task = run[step].task
        assert task.current_attempt == 1, step
        assert getattr(task.data, "var_" + step) == "from-with", step


def test_pypi_environment_is_refused_at_create(project):
    """@pypi and @conda need micromamba and the conda-forge channel to build the step's environment."""
    out = os.path.join(project.workdir, "defs.py")
    _, res = project.create(flow_path("opt_pypi_flow.py"), top=["--environment", "pypi"], check=False)
    assert res.returncode != 0
    assert "step 'start': @pypi is not supported" in res.stderr, res
    assert not os.path.exists(out)


def test_forward_env_gives_tasks_the_named_variables_and_no_others(project, monkeypatch):
    flow = flow_path("opt_env_flow.py")
    monkeypatch.setenv("MFD_FORWARDED", "at-create")  # not the value tasks get: theirs comes from the worker
    defs, _ = project.create(flow, args=["--forward-env", "MFD_FORWARDED", "--forward-env", "MFD_PREFIX_*"])
    allow = flow_literal(defs)["settings"]["env_allowlist"]
    assert allow[-2:] == ["MFD_FORWARDED", "MFD_PREFIX_*"] and "at-create" not in open(defs).read()
    for name, value in (("MFD_FORWARDED", "fwd"), ("MFD_PREFIX_ONE", "1"), ("MFD_PREFIX_TWO", "2"),
                        ("MFD_NOT_FORWARDED", "secret")):
        monkeypatch.setenv(name, value)
    drun, res = project.execute(defs, "OptEnvFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, res
    run = metaflow_run("OptEnvFlow", drun)
    want = {"MFD_FORWARDED": "fwd", "MFD_PREFIX_ONE": "1", "MFD_PREFIX_TWO": "2", "MFD_NOT_FORWARDED": None}
    assert run["start"].task.data.seen == want and run["end"].task.data.seen_end == want


def test_forward_env_refuses_what_is_not_a_variable_name(project):
    for bad in ("MFD=value", "1ABC", "A*B", ""):
        _, res = project.create(flow_path("opt_env_flow.py"), args=["--forward-env", bad], check=False)
        assert res.returncode != 0 and "--forward-env" in res.stderr and "never the value" in res.stderr, res
