"""Resume with Parameters end to end: `deployed.resume(origin_run_id=..., should_fail=False)` and
`python flow.py dagster resume --origin-run-id ... --should_fail False`, on a real `dagster dev`.

A run that failed because of a Parameter is resumed with a corrected value. The Parameters given apply to
the resumed run (its `_parameters` task, and every task that runs again, whatever its parent), the others
keep the origin run's values; cloned tasks keep the origin's artifacts, Parameter values included. Results
are read through the Metaflow client and the Dagster instance; every wait is a bounded poll.
"""

import os
import sys

import pytest
from metaflow import Run, Task

from metaflow_dagster import deployments
from tests.e2e import test_deployed_runs as deployed_runs
from tests.helpers import flow_path

# The fixtures of test_deployed_runs: `deploy` (Deployer(...).dagster().create()) and `daemon` (dagster dev).
deploy, daemon = deployed_runs.deploy, deployed_runs.daemon
finish, origin_of = deployed_runs.finish, deployed_runs.origin_of


def _parameters(run, *names):
    """The values of Parameters ``names`` that the run's `_parameters` task recorded (what `init` was given)."""
    data = Task("%s/_parameters/params" % run.pathspec, _namespace_check=False).data
    return {name: getattr(data, name) for name in names}


def _dagster_run(project, dagster_run_id):
    with deployments.instance(project.home) as inst:
        return inst.get_run_by_id(dagster_run_id)


def _job_runs(project, job):
    from dagster import RunsFilter

    with deployments.instance(project.home) as inst:
        return len(inst.get_runs(filters=RunsFilter(job_name=job)))


def test_linear_run_resumes_with_a_corrected_parameter(project, deploy, daemon):
    deployed = deploy("resume_params_flow.py")
    daemon.start()
    first = deployed.trigger(should_fail=True, label="first", count=3)
    assert finish(first) == "FAILED", daemon.log_tail()
    origin = first.run
    assert "should_fail is set" in first.failure
    assert sorted(s.id for s in origin) == ["prepare", "process", "start"]

    # `label` is required and not given again: the Deployer does not ask for it, the origin's value is kept.
    resumed = deployed.resume(origin_run_id=origin.id, should_fail=False)
    assert finish(resumed) == "SUCCEEDED", resumed.failure or daemon.log_tail()
    run = resumed.run
    assert _parameters(run, "should_fail", "label", "count") == {"should_fail": False, "label": "first", "count": 3}
    for step in ("start", "prepare"):  # cloned, not run again: the origin's artifacts, the origin's value
        task = run[step].task
        assert origin_of(task) == (origin.id, "t"), step
        assert task.data.should_fail is True, step
        pid = "pid_" + step
        assert getattr(task.data, pid) == getattr(origin[step].task.data, pid), step
    assert run["prepare"].task.data.prepare_saw is True
    process, end = run["process"].task, run["end"].task
    assert origin_of(process) is None and origin_of(end) is None
    # The task that runs again sees the new value, though its parent is a clone holding the old one.
    assert process.data.process_saw is False and process.data.should_fail is False
    assert end.data.end_saw is False
    assert run.data.result == "first:False:3" and run.data.should_fail is False
    drun = _dagster_run(project, resumed.dagster_run_id)
    assert drun.tags["metaflow/origin_run_id"] == origin.id
    assert drun.run_config["ops"]["start"]["config"] == {"should_fail": False, "label": "first", "count": 3}

    # A value its type refuses is refused before anything is launched, by the Deployer and by the CLI.
    runs = _job_runs(project, "ResumeParamsFlow")
    with pytest.raises(TypeError, match="count"):
        deployed.resume(origin_run_id=origin.id, count="many")
    res = project.run([sys.executable, flow_path("resume_params_flow.py"), "dagster", "resume", "--origin-run-id",
                       origin.id, "--should_fail", "maybe"])
    assert res.returncode != 0 and "Invalid value for '--should_fail'" in res.stderr, res
    assert _job_runs(project, "ResumeParamsFlow") == runs


def test_foreach_resume_reruns_only_the_failed_item_with_the_new_value(project, deploy, daemon):
    deployed = deploy("resume_params_foreach_flow.py")
    daemon.start()
    first = deployed.trigger(should_fail=True, scale=100)
    assert finish(first) == "FAILED", daemon.log_tail()
    origin = first.run
    origin_body = {t.id: t for t in origin["body"]}
    assert not origin_body["t-1"].successful and origin_body["t-0"].successful

    resumed = deployed.resume(origin_run_id=origin.id, should_fail=False)
    assert finish(resumed) == "SUCCEEDED", resumed.failure or daemon.log_tail()
    run = resumed.run
    assert _parameters(run, "should_fail", "scale") == {"should_fail": False, "scale": 100}
    assert origin_of(run["start"].task) == (origin.id, "t")
    body = {t.id: t for t in run["body"]}
    for tid in ("t-0", "t-2"):  # the items that had succeeded are cloned, with the value they ran with
        assert origin_of(body[tid]) == (origin.id, tid)
        assert body[tid].data.pid == origin_body[tid].data.pid, "a cloned task is not executed again"
        assert body[tid].data.saw is True
    # The failed item runs again (its parent, the foreach step, is a clone) and sees the new value.
    assert origin_of(body["t-1"]) is None
    assert body["t-1"].data.saw is False and body["t-1"].data.value == 100
    # The join runs again; its first input is a clone holding the old value, yet it sees the new one.
    join = run["join"].task
    assert origin_of(join) is None
    assert join.data.items_saw == [True, False, True] and join.data.join_saw is False
    assert run.data.result == [0, 100, 200] and run.data.end_saw is False


def test_cli_resume_with_parameters_when_tasks_start_a_new_interpreter(project, daemon, monkeypatch):
    """The CLI, with every task run as `python -c BOOT flow.py step ...` rather than forked: a Parameter not
    given keeps the origin's value, one given applies to the tasks that run again."""
    monkeypatch.setenv("METAFLOW_DAGSTER_SUBPROCESS", "1")  # dagster dev, and so its run workers, inherit it
    flow = flow_path("resume_params_flow.py")
    project.create(flow)
    daemon.start()
    id_file = os.path.join(project.workdir, "run_id")
    res = project.run([sys.executable, flow, "dagster", "trigger", "--should_fail", "True", "--label", "cli",
                       "--wait", "--run-id-file", id_file])
    assert res.returncode != 0 and "should_fail is set" in res.stderr, res
    origin_id = open(id_file).read()

    res = project.run([sys.executable, flow, "dagster", "resume", "--origin-run-id", origin_id, "--should_fail",
                       "False", "--count", "7", "--wait", "--run-id-file", id_file])
    assert res.returncode == 0, res
    run = Run("ResumeParamsFlow/%s" % open(id_file).read(), _namespace_check=False)
    assert run.id != origin_id and run.successful
    assert _parameters(run, "should_fail", "label", "count") == {"should_fail": False, "label": "cli", "count": 7}
    assert origin_of(run["prepare"].task) == (origin_id, "t") and run["prepare"].task.data.should_fail is True
    process = run["process"].task
    assert origin_of(process) is None and process.data.process_saw is False
    assert process.data.started_as == ["-c"], "the task was not started by a new interpreter"
    assert run.data.result == "cli:False:7"
