"""Every Metaflow graph shape compiled and run end to end on real Dagster with real Metaflow.

Each test compiles a fixture flow with `python flow.py dagster create`, executes the job with
`dagster job execute` on a persistent DAGSTER_HOME, and checks the end step's artifacts through the
Metaflow client and the run's status and events through the Dagster instance. The differential test runs
the same flow with `python flow.py run` too and compares the two runs.
"""

import os
import sys

import pytest
from dagster import DagsterEventType, DagsterRunStatus

from tests.helpers import flow_path, metaflow_run


def run_flow(project, fixture, flow_name, config=None, check=True):
    defs, _ = project.create(flow_path(fixture))
    drun, res = project.execute(defs, flow_name, config=config, check=check)
    assert drun is not None, res
    return drun, res


def step_keys(project, drun, event_type):
    return sorted(
        e.dagster_event.step_key
        for e in project.run_logs(drun.run_id)
        if e.dagster_event is not None and e.dagster_event.event_type == event_type
    )


SHAPES = [
    ("linear_flow.py", "LinearFlow", "world:4:0.5"),
    ("split3_flow.py", "Split3Flow", [11, 12, 13]),
    ("nested_split_flow.py", "NestedSplitFlow", ["a1", "a2", "b"]),
    ("foreach_flow.py", "ForeachFlow", [i * i + 1 for i in range(12)]),
    ("nested_foreach_flow.py", "NestedForeachFlow", [["x1", "x2", "done-x"], ["y1", "y2", "done-y"]]),
    ("foreach3_flow.py", "Foreach3Flow", ["000", "001", "010", "011", "100", "101", "110", "111"]),
    ("foreach_linear_foreach_flow.py", "ForeachLinearForeachFlow", [11, 21, 31]),
    ("switch_flow.py", "SwitchFlow", ["start", "long1", "long2", "merge", "end"]),
    ("switch_in_foreach_flow.py", "SwitchInForeachFlow", ["o1!", "e2", "o3!", "e4"]),
    ("switch_into_foreach_join_flow.py", "SwitchIntoForeachJoinFlow", ["a0", "b1", "b2", "a3", "b4"]),
    ("switch_chain_into_foreach_join_flow.py", "SwitchChainIntoForeachJoinFlow", ["a0+", "b1", "b2", "a3+"]),
    ("nested_switch_into_foreach_join_flow.py", "NestedSwitchIntoForeachJoinFlow",
     [["a0.0", "b0.1"], ["b1.0", "b1.1"], ["a2.0", "a2.1"]]),
    ("switch_in_split_flow.py", "SwitchInSplitFlow", ["b", "other"]),
    ("foreach_in_switch_flow.py", "ForeachInSwitchFlow", [2, 4, 6]),
    ("recursive_switch_flow.py", "RecursiveSwitchFlow", 4),
    ("custom_start_end_flow.py", "CustomStartEndFlow", 42),
    ("single_step_flow.py", "SingleStepFlow", "alone"),
]


@pytest.mark.parametrize("fixture,flow_name,expected", SHAPES, ids=[s[1] for s in SHAPES])
def test_shape_runs_end_to_end(project, fixture, flow_name, expected):
    drun, res = run_flow(project, fixture, flow_name)
    assert drun.status == DagsterRunStatus.SUCCESS, res
    run = metaflow_run(flow_name, drun)
    assert run.successful and run.finished
    assert run.end_task.data.result == expected
    for step in run:
        for task in step:
            assert not task.id.isdigit(), "task ids must never be integers: %s" % task.pathspec


# Shapes whose Dagster run must match `python flow.py run` of the same flow with the same Parameters: switch cases
# that end separately in a join (issue #19), one step or a chain (or a foreach) per case, at the top level or in an
# outer foreach, here with every item taking the same case, or another case than by default. (With their default
# Parameters, where items take either case, tests/e2e/test_differential.py compares these flows, every task and
# artifact.)
DIFFERENTIAL = [
    ("switch_into_foreach_join_flow.py", "SwitchIntoForeachJoinFlow", {"kinds": "bbb"}),
    ("switch_into_foreach_join_flow.py", "SwitchIntoForeachJoinFlow", {"kinds": "aaaa"}),
    ("switch_chain_into_foreach_join_flow.py", "SwitchChainIntoForeachJoinFlow", {"kinds": "bb"}),
    ("nested_switch_into_foreach_join_flow.py", "NestedSwitchIntoForeachJoinFlow", {"groups": "b,aaa"}),
    ("foreach_case_into_foreach_join_flow.py", "ForeachCaseIntoForeachJoinFlow", {"kinds": "xx"}),
    ("switch_in_split_flow.py", "SwitchInSplitFlow", {"mode": "b"}),
    ("switch_in_split_flow.py", "SwitchInSplitFlow", {"mode": "c"}),
]


def native_run(project, fixture, flow_name, params):
    """`python flow.py run --NAME VALUE ...` in the project's directory; returns the Metaflow Run."""
    from metaflow import Run, namespace

    id_file = os.path.join(project.workdir, "native_run_id")
    argv = [sys.executable, flow_path(fixture), "run", "--run-id-file", id_file]
    for name, value in params.items():
        argv += ["--" + name, value]
    res = project.run(argv)
    assert res.returncode == 0, res
    namespace(None)
    with open(id_file) as f:
        return Run("%s/%s" % (flow_name, f.read()))


def public_artifacts(task):
    return {a.id: a.data for a in task if not a.id.startswith("_")}


def tasks_per_step(run):
    return {step.id: len(list(step)) for step in run}


@pytest.mark.parametrize(
    "fixture,flow_name,params", DIFFERENTIAL,
    ids=["%s%s" % (s[1], "".join("-%s=%s" % kv for kv in s[2].items())) for s in DIFFERENTIAL],
)
def test_shape_matches_native_run(project, fixture, flow_name, params):
    native = native_run(project, fixture, flow_name, params)
    assert native.successful
    drun, res = run_flow(project, fixture, flow_name, config={"ops": {"start": {"config": params}}} if params else None)
    assert drun.status == DagsterRunStatus.SUCCESS, res
    # The end op ran (a join whose switch cases were skipped must not skip the rest of the job).
    assert "end" in step_keys(project, drun, DagsterEventType.STEP_SUCCESS)
    run = metaflow_run(flow_name, drun)
    assert run.successful and run.finished
    assert public_artifacts(run.end_task) == public_artifacts(native.end_task)
    assert tasks_per_step(run) == tasks_per_step(native)


def test_parameters_reach_init_and_logs_stream(project):
    drun, res = run_flow(
        project, "linear_flow.py", "LinearFlow", config={"ops": {"start": {"config": {"alpha": 2.25, "greeting": "dagster"}}}}
    )
    run = metaflow_run("LinearFlow", drun)
    assert run.end_task.data.result == "dagster:4:2.25"
    assert run.data.alpha == 2.25 and isinstance(run.data.alpha, float)
    messages = [e.user_message for e in project.run_logs(drun.run_id)]
    assert any("step b says hello to dagster" in m for m in messages), "step stdout must reach the Dagster log"
    # Op metadata lists the artifacts of the step and how to fetch them.
    mats = [
        e.dagster_event.event_specific_data.metadata
        for e in project.run_logs(drun.run_id)
        if e.dagster_event is not None
        and e.dagster_event.event_type == DagsterEventType.STEP_OUTPUT
        and e.dagster_event.step_key == "end"
    ]
    assert mats and "result" in mats[0]["artifacts"].text
    assert "Task(" in mats[0]["retrieve"].md_str


def test_nested_foreach_inner_levels_are_parallel_ops(project):
    drun, _ = run_flow(project, "nested_foreach_flow.py", "NestedForeachFlow")
    leaf_keys = [k for k in step_keys(project, drun, DagsterEventType.STEP_SUCCESS) if k.startswith("leaf")]
    # One Dagster op execution per inner task: 2 outer x 2 inner.
    assert leaf_keys == ["leaf[0_0]", "leaf[0_1]", "leaf[1_0]", "leaf[1_1]"]
    run = metaflow_run("NestedForeachFlow", drun)
    assert sorted(t.id for t in run["leaf"]) == ["t-0-0", "t-0-1", "t-1-0", "t-1-1"]


def test_switch_skips_branches_not_taken(project):
    drun, _ = run_flow(project, "switch_flow.py", "SwitchFlow", config={"ops": {"start": {"config": {"mode": "short"}}}})
    run = metaflow_run("SwitchFlow", drun)
    assert run.end_task.data.result == ["start", "short", "merge", "end"]
    assert step_keys(project, drun, DagsterEventType.STEP_SKIPPED) == ["long1", "long2"]
    drun, _ = run_flow(project, "switch_flow.py", "SwitchFlow", config={"ops": {"start": {"config": {"mode": "skip"}}}})
    assert metaflow_run("SwitchFlow", drun).end_task.data.result == ["start", "merge", "end"]


def test_recursive_switch_runs_one_task_per_iteration(project):
    drun, _ = run_flow(project, "recursive_switch_flow.py", "RecursiveSwitchFlow")
    run = metaflow_run("RecursiveSwitchFlow", drun)
    assert sorted(t.id for t in run["loop"]) == ["t", "t-r1", "t-r2", "t-r3"]


def test_foreach_over_zero_items_fails_as_metaflow_does(project):
    drun, res = run_flow(
        project, "foreach_flow.py", "ForeachFlow", config={"ops": {"start": {"config": {"count": 0}}}}, check=False
    )
    assert res.returncode != 0
    assert drun.status == DagsterRunStatus.FAILURE
    messages = "\n".join(e.user_message for e in project.run_logs(drun.run_id))
    assert "produced zero splits" in messages


def test_failing_step_fails_the_run_with_the_traceback(project):
    drun, res = run_flow(project, "failing_flow.py", "FailingFlow", check=False)
    assert drun.status == DagsterRunStatus.FAILURE
    logs = project.run_logs(drun.run_id)
    messages = "\n".join(e.user_message for e in logs)
    assert "ValueError: kaboom from step boom" in messages
    assert "Traceback" in messages
    failed = step_keys(project, drun, DagsterEventType.STEP_FAILURE)
    assert failed == ["boom"]
    run = metaflow_run("FailingFlow", drun)
    assert not run.successful
