"""Parameters and Configs reach every step on Dagster with the values and types Metaflow gives them (issue #3).

Parameters: every kind (str, int, float, bool, JSON, IncludeFile, required without default, a dashed name, a
name like a step option), given as strings on the `dagster trigger` command line or as typed run config on
Dagster's launchpad; wrong values are refused before any Metaflow task runs. Configs: resolved once at
`create` (default file, `--config`, `--config-value`, parser, plain) and the mutations they drive
(config_expr, FlowMutator, StepMutator) hold in every step. Outcomes are read through the Metaflow client
and the Dagster instance.
"""

import json
import sys

import pytest
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter
from metaflow import Run, namespace
from metaflow.exception import MetaflowNotFound

from metaflow_dagster.runtime import RUN_ID_TAG
from tests.helpers import DagsterDev, flow_literal, flow_path, metaflow_run

PARAMS_FLOW = "OptParamsFlow"
TYPES = ["str", "int", "float", "bool", "dict", "int", "int", "int", "str"]  # of OptParamsFlow._record's values


@pytest.fixture
def daemon(project):
    d = DagsterDev(project)
    yield d
    d.stop()


def recorded(run):
    """What the start and the end step of an OptParamsFlow run saw: [[values...], [type names...]] each."""
    return [run["start"].task.data.seen_start, run["end"].task.data.seen_end]


def step_events(project, drun, kind):
    return [
        e.dagster_event
        for e in project.run_logs(drun.run_id)
        if e.dagster_event is not None and e.dagster_event.event_type == kind
    ]


def log_text(project, drun):
    """The run's log messages and the description of every step failure."""
    out = [e.user_message for e in project.run_logs(drun.run_id)]
    for ev in step_events(project, drun, DagsterEventType.STEP_FAILURE):
        if ev.step_failure_data.user_failure_data is not None:
            out.append(ev.step_failure_data.user_failure_data.description or "")
        if ev.step_failure_data.error is not None:
            out.append(ev.step_failure_data.error.to_string())
    return "\n".join(out)


def test_parameters_given_as_strings_on_the_command_line_keep_their_types(project, daemon, tmp_path):
    flow = flow_path("opt_params_flow.py")
    notes = tmp_path / "notes.txt"
    notes.write_text("notes from the command line\n")
    project.create(flow)
    daemon.start()
    run_id_file = tmp_path / "run_id"
    res = project.run([
        sys.executable, flow, "dagster", "trigger", "--wait", "--run-id-file", str(run_id_file),
        "--text", "two words", "--count", "7", "--ratio", "2.5", "--flag", "true", "--spec", '{"a": [1, 2]}',
        "--needed", "5", "--max-items", "9", "--retry_count", "4", "--notes", str(notes),
    ])
    assert res.returncode == 0, res
    namespace(None)
    run = Run("%s/%s" % (PARAMS_FLOW, run_id_file.read_text()))
    assert run.successful
    values = ["two words", 7, 2.5, True, {"a": [1, 2]}, 5, 9, 4, "notes from the command line\n"]
    assert recorded(run) == [[values, TYPES]] * 2
    # The strings became the start op's typed run config; the file was uploaded at trigger time.
    with project.instance() as inst:
        [drun] = inst.get_runs(filters=RunsFilter(tags={RUN_ID_TAG: run.id}))
    config = drun.run_config["ops"]["start"]["config"]
    assert {k: config[k] for k in ("count", "ratio", "flag", "needed", "max-items", "retry_count")} == {
        "count": 7, "ratio": 2.5, "flag": True, "needed": 5, "max-items": 9, "retry_count": 4
    }
    assert json.loads(config["spec"]) == {"a": [1, 2]}
    assert json.loads(config["notes"])["type"] == "uploader-v2"


def test_launchpad_config_takes_required_dashed_and_file_parameters(project, tmp_path):
    notes = tmp_path / "launchpad.txt"
    notes.write_text("notes from a path\n")
    defs, _ = project.create(flow_path("opt_params_flow.py"))
    config = {"needed": 3, "max-items": 11, "notes": str(notes)}
    drun, res = project.execute(defs, PARAMS_FLOW, config={"ops": {"start": {"config": config}}})
    assert drun.status == DagsterRunStatus.SUCCESS, res
    # Parameters not given keep their defaults, the IncludeFile default included (uploaded at `create`).
    values = ["hello", 1, 0.5, False, {"k": 1}, 3, 11, 2, "notes from a path\n"]
    assert recorded(metaflow_run(PARAMS_FLOW, drun)) == [[values, TYPES]] * 2
    drun, res = project.execute(defs, PARAMS_FLOW, config={"ops": {"start": {"config": {"needed": 4}}}})
    assert drun.status == DagsterRunStatus.SUCCESS, res
    [[seen, _], _] = recorded(metaflow_run(PARAMS_FLOW, drun))
    assert seen[5] == 4 and seen[8] == "default notes\n"


def test_wrong_parameter_values_fail_before_any_task_runs(project):
    flow = flow_path("opt_params_flow.py")
    defs, _ = project.create(flow)
    # On the command line the parameter's own type refuses the value; nothing is launched.
    for args, named in (
        (["--needed", "1", "--count", "abc"], "Invalid value for '--count'"),
        (["--needed", "1", "--flag", "maybe"], "Invalid value for '--flag'"),
        (["--needed", "1", "--spec", "{bad"], "Invalid value for '--spec'"),
        (["--count", "2"], "Missing option '--needed'"),
    ):
        res = project.run([sys.executable, flow, "dagster", "trigger", *args])
        assert res.returncode != 0 and named in res.stderr, res
    assert project.latest_run(PARAMS_FLOW) is None
    # On the launchpad Dagster's config schema refuses a wrong type or a missing required parameter: no run.
    for config, named in (({"needed": 1, "count": "abc"}, "config:count"), ({"count": 2}, 'entry "needed"')):
        drun, res = project.execute(defs, PARAMS_FLOW, config={"ops": {"start": {"config": config}}}, check=False)
        assert res.returncode != 0 and named in res.stdout + res.stderr, res
        assert drun is None
    # JSON arrives as text there: Metaflow's init refuses it before the start task, and no Metaflow run exists.
    config = {"needed": 1, "spec": "{bad"}
    drun, res = project.execute(defs, PARAMS_FLOW, config={"ops": {"start": {"config": config}}}, check=False)
    assert drun.status == DagsterRunStatus.FAILURE
    assert [e.step_key for e in step_events(project, drun, DagsterEventType.STEP_FAILURE)] == ["start"]
    log = log_text(project, drun)
    assert "Invalid value for '--spec'" in log and "Metaflow init of run" in log
    with pytest.raises(MetaflowNotFound):
        metaflow_run(PARAMS_FLOW, drun)


def test_configs_and_their_mutations_at_create_hold_in_every_step(project, tmp_path):
    settings = tmp_path / "cfg_settings.json"  # CfgFlow's default file, relative to where `create` runs
    settings.write_text(json.dumps({"project": "cfg_demo", "mode": "from-file", "threshold": 7}))
    (tmp_path / "kv.txt").write_text("a=10\nb=20\n")
    extra = {"label": "deploy", "retries": 2}
    defs, _ = project.create(
        flow_path("cfg_flow.py"), top=["--config", "kv", "kv.txt", "--config-value", "extra", json.dumps(extra)]
    )
    flow = flow_literal(defs)
    assert flow["job_name"] == "cfg_demo_user_tester_CfgFlow"  # config_expr in @project
    assert [(p["name"], p["default"]) for p in flow["parameters"]] == [("threshold", 7)]  # FlowMutator
    assert flow["steps"]["flaky"]["user_retries"] == 2  # StepMutator
    # Runs use the values resolved at `create`, whatever the file holds now.
    settings.write_text(json.dumps({"project": "other", "mode": "edited", "threshold": 1}))
    drun, res = project.execute(defs, flow["job_name"], config={"ops": {"start": {"config": {"threshold": 9}}}})
    assert drun.status == DagsterRunStatus.SUCCESS, res
    run = metaflow_run("CfgFlow", drun)
    expected = {
        "settings": {"project": "cfg_demo", "mode": "from-file", "threshold": 7},
        "extra": extra,
        "kv": {"a": "10", "b": "20"},
        "motto": "be kind",
        "threshold": 9,
        "mode": "from-file",
        "project": "cfg_demo",
    }
    for name in ("start", "flaky", "end"):
        assert getattr(run[name].task.data, "seen_" + name) == expected, name
    # The StepMutator's @retry ran the failing first attempt again, on Dagster and in Metaflow.
    assert [e.step_key for e in step_events(project, drun, DagsterEventType.STEP_RESTARTED)] == ["flaky"]
    assert run["flaky"].task.current_attempt == 1
