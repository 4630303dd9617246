"""One definitions file for many flows (`create --add-flow`), end to end on real Dagster.

An Extract -> Transform -> Load chain (ChainA -> ChainB -> ChainC, @trigger_on_finish) compiled into one
file is one code location: loaded with runpy it holds the three jobs and both sensors; served with
`dagster dev -f etl.py`, one run of ChainA makes its sensors start ChainB and then ChainC. Deployed to
DAGSTER_HOME, the file is one workspace entry and `python flow.py dagster trigger` runs any of its jobs.
Results are read through the Metaflow client and the Dagster instance.
"""

import json
import os
import runpy
import sys
import time
import urllib.request

import pytest
from dagster import DagsterRunStatus, RunsFilter

from metaflow_dagster import deployments
from tests.helpers import DagsterDev, dagster_dev, flow_path, metaflow_run, wait_for

A_JOB, B_JOB, C_JOB = "chain_user_tester_ChainAFlow", "chain_user_tester_ChainBFlow", "ChainCFlow"
CHAIN = ["--add-flow", flow_path("chain_b_flow.py"), "--add-flow", flow_path("chain_c_flow.py")]


def runs_of(project, job):
    with project.instance() as inst:
        return inst.get_runs(filters=RunsFilter(job_name=job))


def finished(project, job):
    runs = [r for r in runs_of(project, job) if r.is_finished]
    return runs or None


def _graphql(url, query):
    req = urllib.request.Request(url + "/graphql", data=json.dumps({"query": query}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())["data"]


def test_extract_transform_load_in_one_file_runs_as_one_code_location(project):
    defs, res = project.create(flow_path("chain_a_flow.py"), out="etl.py", args=CHAIN)
    assert "Wrote Dagster definitions for ChainAFlow, ChainBFlow, ChainCFlow" in res.stderr

    # Loaded as Dagster loads it: three jobs, two sensors named after their jobs, each event asset once.
    d = runpy.run_path(defs)["defs"]
    jobs = {j.name: j for j in d.resolve_all_job_defs() if not j.name.startswith("__")}
    assert sorted(jobs) == sorted([A_JOB, B_JOB, C_JOB])
    assert sorted(s.name for s in d.sensors) == [
        "ChainCFlow_after_ChainAFlow_and_ChainBFlow", B_JOB + "_after_ChainAFlow"]
    assets = {spec.key.path[-1]: spec.description for spec in d.resolve_all_asset_specs()}
    assert sorted(assets) == ["metaflow.chain.user.tester.ChainAFlow.end", "metaflow.chain.user.tester.ChainBFlow.end"]
    assert assets["metaflow.chain.user.tester.ChainAFlow.end"].endswith("(triggers ChainBFlow, ChainCFlow)")
    ops = {job: sorted(n.name for n in jobs[job].nodes) for job in jobs}
    assert ops[B_JOB] == [B_JOB + "__done", B_JOB + "__end", B_JOB + "__start"]
    assert all(name.startswith(job + "__") for job in ops for name in ops[job])

    with dagster_dev(project, [defs]) as url:
        data = _graphql(url, "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
        assert [e["name"] for e in data["workspaceOrError"]["locationEntries"]] == ["etl.py"]
        drun, res = project.execute(defs, A_JOB, config={"ops": {A_JOB + "__start": {"config": {"seed": 4}}}})
        assert drun.status == DagsterRunStatus.SUCCESS, res
        a_run = metaflow_run("ChainAFlow", drun)
        wait_for(lambda: finished(project, C_JOB), 600, "the ChainC run (dev.log in %s)" % project.workdir,
                 interval=2)
        time.sleep(8)  # more sensor ticks: nothing else may start
        b_done, c_done = runs_of(project, B_JOB), runs_of(project, C_JOB)
    print("one-file chain: %d ChainB runs, %d ChainC runs" % (len(b_done), len(c_done)))
    assert len(b_done) == 1 and len(c_done) == 1
    assert [r.status for r in b_done + c_done] == [DagsterRunStatus.SUCCESS] * 2
    # The sensors of the one code location started both runs.
    assert {r.remote_job_origin.location_name for r in b_done + c_done} == {"etl.py"}

    # Transform read Extract's data; Load saw both upstream runs.
    b = metaflow_run("ChainBFlow", b_done[0])
    c = metaflow_run("ChainCFlow", c_done[0])
    assert a_run.successful and b.successful and c.successful
    assert a_run["start"].task.data.rows == [40, 41, 42]
    assert b["start"].task.data.upstream == a_run.pathspec
    assert b["start"].task.data.total == 123
    assert b.trigger.run.pathspec == a_run.pathspec
    assert c["start"].task.data.upstreams == sorted([a_run.pathspec, b.pathspec])
    assert c["start"].task.data.total == 123
    assert c.trigger.run.pathspec == b.pathspec


@pytest.fixture
def daemon(project):
    d = DagsterDev(project)
    yield d
    d.stop()


def _cli(project, fixture, *args):
    return project.run([sys.executable, flow_path(fixture), "dagster", *args])


def test_deployed_file_of_several_flows_is_one_location_and_triggers_each_job(project, daemon):
    defs, res = project.create(flow_path("chain_a_flow.py"), out="etl.py",
                               args=["--add-flow", flow_path("linear_flow.py")])
    assert "(one deployment, %s)" % A_JOB in res.stderr
    ws = deployments.Workspace(project.home)
    assert ws.deployments() == {A_JOB: defs}
    assert ws.locate("LinearFlow") == (A_JOB, defs)
    listed = _cli(project, "linear_flow.py", "list", "--all")
    assert listed.returncode == 0, listed
    assert listed.stdout.splitlines() == ["%s ChainAFlow %s" % (A_JOB, defs), "LinearFlow LinearFlow %s" % defs]

    # The second flow's job is triggered by name from its own flow file, and runs in the file's repository.
    daemon.start()
    id_file = os.path.join(project.workdir, "run_id")
    res = _cli(project, "linear_flow.py", "trigger", "--greeting", "multi", "--wait", "--run-id-file", id_file)
    assert res.returncode == 0, "%s\n%s" % (res, daemon.log_tail())
    from metaflow import Run, namespace

    namespace(None)
    run = Run("LinearFlow/%s" % open(id_file).read())
    assert run.successful and run.data.result == "multi:4:0.5"
    with deployments.instance(project.home) as inst:
        drun = deployments.find_run(inst, "LinearFlow", run.id)
    assert drun.remote_job_origin.location_name == "metaflow"
    assert drun.remote_job_origin.repository_origin.repository_name == A_JOB
    # The first flow's parameters reach its start op, whose name carries the job's prefix.
    res = _cli(project, "chain_a_flow.py", "trigger", "--seed", "7", "--wait", "--run-id-file", id_file)
    assert res.returncode == 0, "%s\n%s" % (res, daemon.log_tail())
    assert Run("ChainAFlow/%s" % open(id_file).read())["start"].task.data.rows == [70, 71, 72]

    # A job lives in one deployment: deploying LinearFlow again on its own is refused until it is deleted.
    res = _cli(project, "linear_flow.py", "create")
    assert res.returncode != 0
    assert "job LinearFlow is already deployed as part of deployment %s" % A_JOB in res.stderr
    res = _cli(project, "linear_flow.py", "delete")
    assert res.returncode == 0, res
    assert "The jobs %s of the same file went with it" % A_JOB in res.stderr
    assert ws.deployments() == {}
