"""Hundreds of deployed flows on one Dagster instance, served by the command `create` prints.

200 real flows (tests/fleet.py: 197 small generated ones, plus a @trigger flow, a @trigger_on_finish flow and
a @schedule flow deployed with the real `create`) on one `dagster dev -w`: its processes' memory together,
every job, schedule and sensor in the UI's GraphQL, runs of them, a 201st `create` while it serves (and the
time until that flow's run starts), one code server for all of them, and a deployment that breaks without
taking the others down.
"""

import os
import sys
import time

from dagster import DagsterInstance, DagsterRunStatus
from metaflow import Run, namespace

from metaflow_dagster import deployments
from metaflow_dagster.events import DagsterEvent
from tests import fleet
from tests.helpers import DagsterDev, flow_path, wait_for

FLEET = 200
MEMORY_LIMIT = 1.5 * 2**30

FINISH_FLOW = '''from metaflow import FlowSpec, current, step, trigger_on_finish


@trigger_on_finish(flow="Fleet000Flow")
class FleetFinishFlow(FlowSpec):
    """Runs once for each successful run of Fleet000Flow."""

    @step
    def start(self):
        self.upstream = current.trigger.run.pathspec
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FleetFinishFlow()
'''

SERVED = """{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError {
  ... on RepositoryLocation { repositories { name jobs { name tags { key value } } schedules { name }
  sensors { name } } } ... on PythonError { message } } } } } }"""


def served(url):
    """{"jobs": {job: tags}, "schedules": [...], "sensors": [...]} of the location `metaflow`."""
    data = deployments.graphql(url, SERVED)["workspaceOrError"]["locationEntries"]
    (entry,) = [e for e in data if e["name"] == "metaflow"]
    repos = entry["locationOrLoadError"].get("repositories") or []
    return {  # not Dagster's own jobs (the event assets' repository has an implicit __ASSET_JOB)
        "jobs": {j["name"]: {t["key"]: t["value"] for t in j["tags"]} for r in repos for j in r["jobs"]
                 if not j["name"].startswith("__")},
        "schedules": sorted(s["name"] for r in repos for s in r["schedules"]),
        "sensors": sorted(s["name"] for r in repos for s in r["sensors"]),
    }


def run_of(project, job, run_id, status, timeout=300):
    """The Dagster run of ``job`` for Metaflow run ``run_id`` once its status is in ``status``."""
    def check():
        with DagsterInstance.from_config(project.home) as inst:
            run = deployments.find_run(inst, job, run_id)
            return run if run is not None and run.status in status else None

    return wait_for(check, timeout, "run %s of %s to be %s" % (run_id, job, status))


def trigger(project, fixture, *args):
    res = project.run([sys.executable, fixture, "--no-pylint", "dagster", "trigger", *args])
    assert res.returncode == 0, res
    return next(line for line in res.stderr.splitlines() if line.startswith("Triggered ")).split("(run ")[1].split(
        ",")[0]


def test_two_hundred_deployed_flows_on_one_dagster(project, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", project.home)
    namespace(None)
    src = tmp_path / "fleet"
    src.mkdir()
    started = time.monotonic()
    fleet.deploy_fleet(project.home, str(src), FLEET - 3, project.env())
    (src / "fleet_finish_flow.py").write_text(FINISH_FLOW)
    for flow_file in (str(src / "fleet_finish_flow.py"), flow_path("trigger_flow.py"),
                      flow_path("schedule_daily_flow.py")):
        project.create(flow_file, out=os.path.basename(flow_file))
    deployed_in = time.monotonic() - started
    assert len(deployments.Workspace(project.home).deployments()) == FLEET

    dev = DagsterDev(project)
    try:
        started = time.monotonic()
        dev.start()
        state = wait_for(lambda: (lambda s: s if len(s["jobs"]) == FLEET else None)(served(dev.url)), 300,
                         "dagster dev to serve %d jobs" % FLEET)
        served_in = time.monotonic() - started
        # Every job, schedule and sensor is in the UI.
        assert sorted(state["jobs"]) == sorted([fleet.flow_name(i) for i in range(FLEET - 3)] + [
            "FleetFinishFlow", "TriggeredFlow", "ScheduleDailyFlow"])
        assert state["schedules"] == ["ScheduleDailyFlow_schedule"]
        assert state["sensors"] == ["FleetFinishFlow_after_Fleet000Flow", "TriggeredFlow_on_data_ready"]
        memory = fleet.rss_bytes(dev.pids())
        servers = fleet.code_servers(dev.pids())
        print("%d flows: deployed in %.0f s, served after %.0f s; %d processes, %.0f MB resident, %d code server(s)"
              % (FLEET, deployed_in, served_in, len(dev.pids()), memory / 2**20, len(servers)))
        assert memory <= MEMORY_LIMIT, "%.0f MB resident for %d flows" % (memory / 2**20, FLEET)
        assert len(servers) == 1, "one code server for every deployment"

        # Runs of any of them succeed; the @trigger_on_finish flow follows its upstream, the @trigger flow an event.
        run_id = trigger(project, str(src / "fleet_000.py"), "--n", "41").split("/")[1]
        assert run_of(project, "Fleet000Flow", run_id, [DagsterRunStatus.SUCCESS]).status == DagsterRunStatus.SUCCESS
        assert Run("Fleet000Flow/%s" % run_id).data.result == 42
        DagsterEvent("data.ready", payload={"who": "fleet"}).publish(ignore_errors=False)
        for job in ("FleetFinishFlow", "TriggeredFlow"):
            def done(job=job):
                with DagsterInstance.from_config(project.home) as inst:
                    runs = [r for r in inst.get_runs() if r.job_name == job]
                return runs if runs and runs[0].status == DagsterRunStatus.SUCCESS else None

            assert len(wait_for(done, 300, "a successful run of %s" % job)) == 1

        # The 201st flow, created while all this serves: create, then trigger at once, until its run started.
        fleet.write_flow(str(src), FLEET)
        started = time.monotonic()
        res = project.run([sys.executable, str(src / ("fleet_%03d.py" % FLEET)), "--no-pylint", "dagster", "create"])
        assert res.returncode == 0, res
        created_in = time.monotonic() - started
        run_id = trigger(project, str(src / ("fleet_%03d.py" % FLEET))).split("/")[1]
        run_of(project, fleet.flow_name(FLEET), run_id, [DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS])
        running_in = time.monotonic() - started
        assert run_of(project, fleet.flow_name(FLEET), run_id, [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
                      ).status == DagsterRunStatus.SUCCESS
        print("201st flow: create %.1f s, create -> its run STARTED %.1f s" % (created_in, running_in))
        wait_for(lambda: len(fleet.code_servers(dev.pids())) == 1, 120, "the replaced code server to exit")

        # A deployment that breaks (its flow file edited after create) takes no other down: it is reported, with
        # its flow, by `list` and in the UI, and the others keep serving and running.
        with open(src / "fleet_005.py", "a") as f:
            f.write("# edited after create\n")
        res = project.run([sys.executable, str(src / "fleet_010.py"), "--no-pylint", "dagster", "delete"])
        assert res.returncode == 0, res
        state = served(dev.url)
        assert "Fleet010Flow" not in state["jobs"] and len(state["jobs"]) == FLEET
        broken = state["jobs"]["Fleet005Flow"].get("metaflow/broken", "")
        assert "deployment Fleet005Flow (flow Fleet005Flow" in broken and "stale" in broken, broken
        listed = project.run([sys.executable, str(src / "fleet_006.py"), "--no-pylint", "dagster", "list", "--all"])
        assert listed.returncode == 0, listed
        (line,) = [line for line in listed.stdout.splitlines() if line.startswith("Fleet005Flow ")]
        assert "(broken:" in line and "stale" in line
        assert sum(1 for line in listed.stdout.splitlines() if "(broken:" not in line) == FLEET - 1
        res = project.run([sys.executable, str(src / "fleet_005.py"), "--no-pylint", "dagster", "trigger"])
        assert res.returncode != 0 and "Fleet005Flow" in res.stderr, res
        run_id = trigger(project, str(src / "fleet_006.py")).split("/")[1]
        assert run_of(project, "Fleet006Flow", run_id, [DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE]
                      ).status == DagsterRunStatus.SUCCESS
    finally:
        dev.stop()
