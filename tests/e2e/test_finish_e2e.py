"""@trigger_on_finish end to end: real upstream runs emit Metaflow's flow-finished event into Dagster's
event log, and downstream sensors, served by the real daemon, start exactly one run per upstream success.

Results are read through the Dagster instance (runs, tags, ticks) and the Metaflow client (data,
Run.trigger).
"""

import signal
import subprocess
import sys
import time

from dagster import DagsterRunStatus, RunsFilter
from dagster._core.scheduler.instigation import InstigatorType

from tests.e2e.test_events_e2e import DAEMON
from tests.helpers import Server, dagster_dev, flow_path, hold_runs, metaflow_run, wait_for

A_JOB, B_JOB, C_JOB = "chain_user_tester_ChainAFlow", "chain_user_tester_ChainBFlow", "ChainCFlow"

# Runs the job of a definitions file N times in this process with Dagster's in-process executor: real
# Dagster runs on the instance in DAGSTER_HOME, each running its Metaflow tasks, emitting its end event.
RUN_MANY = """
import runpy, sys
from dagster import DagsterInstance
job = runpy.run_path(sys.argv[1])["defs"].resolve_job_def(sys.argv[2])
with DagsterInstance.get() as instance:
    for i in range(int(sys.argv[3])):
        assert job.execute_in_process(instance=instance, raise_on_error=False).success
"""


def runs_of(project, job, status=None):
    with project.instance() as inst:
        return inst.get_runs(filters=RunsFilter(job_name=job, statuses=[status] if status else None))


def finished(project, job, n):
    runs = [r for r in runs_of(project, job) if r.is_finished]
    return runs if len(runs) >= n else None


def test_three_flows_in_three_files_chain_once_per_upstream_run(project):
    """ChainA -> ChainB (inherits @project) -> ChainC (waits for both, names them in full), served by
    `dagster dev -f a.py -f b.py -f c.py`; two ChainA runs give exactly two ChainB and two ChainC runs."""
    files = [project.create(flow_path("chain_%s_flow.py" % x), out="%s.py" % x)[0] for x in "abc"]
    with dagster_dev(project, files, timeout=180):
        a_runs = []
        for seed in (1, 2):
            drun, res = project.execute(files[0], A_JOB, config={"ops": {"start": {"config": {"seed": seed}}}})
            assert drun.status == DagsterRunStatus.SUCCESS, res
            a_runs.append(metaflow_run("ChainAFlow", drun))
            wait_for(lambda n=seed: finished(project, C_JOB, n), 420, "ChainC run %d (dev.log in %s)"
                     % (seed, project.workdir), interval=2)
        time.sleep(8)  # more sensor ticks: nothing else may start
        b_done, c_done = runs_of(project, B_JOB), runs_of(project, C_JOB)
    print("chain: %d ChainA runs, %d ChainB runs, %d ChainC runs" % (len(a_runs), len(b_done), len(c_done)))
    assert len(b_done) == 2 and len(c_done) == 2
    assert all(r.status == DagsterRunStatus.SUCCESS for r in b_done + c_done)

    # current.trigger.run is the upstream Run: ChainB read each ChainA run's artifacts.
    b_by_a = {r["start"].task.data.upstream: r for r in (metaflow_run("ChainBFlow", d) for d in b_done)}
    assert sorted(b_by_a) == sorted(a.pathspec for a in a_runs)
    b_runs = [b_by_a[a.pathspec] for a in a_runs]
    assert [r["start"].task.data.total for r in b_runs] == [33, 63]
    c_runs = sorted((metaflow_run("ChainCFlow", r) for r in c_done), key=lambda r: r.created_at)
    for a, b, c in zip(a_runs, b_runs, c_runs):
        data = c["start"].task.data
        # .runs lists every upstream run, .run is the latest, and Run.trigger in the client agrees.
        assert data.upstreams == sorted([a.pathspec, b.pathspec])
        assert data.latest == b.pathspec and data.total == b["start"].task.data.total
        assert sorted(r.pathspec for r in c.trigger.runs) == data.upstreams
        assert c.trigger.run.pathspec == b.pathspec
        assert {e.type for e in c.trigger.events} == {"run"}
        assert b.trigger.run.pathspec == a.pathspec
        assert b.trigger.event.id == a.end_task.pathspec


def test_two_hundred_upstream_runs_between_two_ticks_start_exactly_two_hundred_runs(project):
    """The downstream sensor ticks once, the daemon stops, 200 BurstUpFlow runs finish, the daemon restarts:
    its next tick must start exactly one BurstDownFlow run for each. The run queue holds them
    (max_concurrent_runs: 0), so this counts what the sensor creates."""
    hold_runs(project)
    a_defs, _ = project.create(flow_path("burst_up_flow.py"), out="up.py")
    b_defs, _ = project.create(flow_path("burst_down_flow.py"), out="down.py")
    with project.instance() as inst:
        inst.get_runs_count()  # create the storage before two processes use it

    def ticks():
        with project.instance() as inst:
            states = [s for s in inst.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                      if s.name == "BurstDownFlow_after_BurstUpFlow"]
            if not states:
                return []
            return inst.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=1000)

    daemon = Server(project, DAEMON + ["run", "-f", b_defs], "daemon1.log")
    try:
        wait_for(ticks, 180, "the first tick of the BurstDownFlow sensor", interval=1)
    finally:
        daemon.kill()
    before = len(ticks())
    env = project.env()
    workers = [subprocess.Popen([sys.executable, "-c", RUN_MANY, a_defs, "BurstUpFlow", "100"], cwd=project.workdir,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
               for _ in range(2)]
    for w in workers:
        _, err = w.communicate(timeout=1500)
        assert w.returncode == 0, err[-3000:]
    a_runs = runs_of(project, "BurstUpFlow", DagsterRunStatus.SUCCESS)
    assert len(a_runs) == 200 and len(ticks()) == before
    ends = {metaflow_run("BurstUpFlow", r).end_task.pathspec for r in a_runs}

    daemon = Server(project, DAEMON + ["run", "-f", b_defs], "daemon2.log")
    try:
        wait_for(lambda: len(runs_of(project, "BurstDownFlow")) >= 200, 900, "200 BurstDownFlow runs", interval=2)
        time.sleep(8)  # more ticks: nothing else may start
        b_runs = runs_of(project, "BurstDownFlow")
        new_ticks = len(ticks()) - before
    finally:
        daemon.kill(signal.SIGTERM)
    event_ids = [r.tags["metaflow/event_ids"] for r in b_runs]
    print("finish burst: 200 upstream runs, %d downstream runs, %d distinct upstream ids, %d ticks after restart"
          % (len(b_runs), len(set(event_ids)), new_ticks))
    assert len(b_runs) == 200
    assert sorted(event_ids) == sorted(ends)
