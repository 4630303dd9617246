"""Faults in the multi-process deployment, with nothing lost: every test prints its counts and requires
0 lost and 0 duplicated.

The setup is the one of test_distributed.py (PostgreSQL instance storage, an S3 datastore, the code package,
a gRPC code server per definitions file, the webserver and the daemon as separate processes). Runs that the
@trigger sensor creates stay queued (a tag concurrency limit of 0 on `dagster/sensor_name`): the sensor tests
count what the sensor creates, exactly as the SQLite burst test of test_events_e2e.py does, while the runs
launched through GraphQL execute.
"""

import os
import shutil
import signal

import pytest
from dagster import DagsterEventType, DagsterRunStatus, RunsFilter

from metaflow_dagster.events import DagsterEvent
from metaflow_dagster.runtime import metaflow_run_id
from tests.helpers import FLOWS, wait_for
from tests.infra import DagsterCluster, deploy, postgres, s3  # noqa: F401 (pytest fixtures)

FIXTURES = ["trigger_flow.py", "sleepy_flow.py", "killed_step_flow.py"]
SENSOR = "TriggeredFlow_on_data_ready"
RUN_TIMEOUT = 600


@pytest.fixture(scope="module")
def cluster(postgres, s3, tmp_path_factory):  # noqa: F811
    root = str(tmp_path_factory.mktemp("faults"))
    src, defs_dir = os.path.join(root, "src"), os.path.join(root, "defs")
    os.makedirs(src)
    os.makedirs(defs_dir)
    env = dict(os.environ, **s3.env(), METAFLOW_DEFAULT_DATASTORE="s3",
               METAFLOW_DAGSTER_CODE_CACHE=os.path.join(root, "code-cache"))
    for fixture in FIXTURES:
        shutil.copy(os.path.join(FLOWS, fixture), src)
    jobs = deploy(src, FIXTURES, defs_dir, env)
    shutil.rmtree(src)
    hold_sensor_runs = {"tag_concurrency_limits": [{"key": "dagster/sensor_name", "limit": 0}]}
    c = DagsterCluster(root, postgres, postgres.create_database("faults"), env, run_queue=hold_sensor_runs)
    for job, defs in sorted(jobs.items()):
        c.add_code_server(job, defs)
    client_env = {k: v for k, v in s3.env().items() if k.startswith("AWS_")}
    os.environ.update(client_env, AWS_ENDPOINT_URL_S3=s3.url, DAGSTER_PG_PASSWORD=postgres.password,
                      DAGSTER_HOME=c.home)
    c.postgres = postgres
    try:
        c.start()
        yield c
    finally:
        c.stop()
        for k in list(client_env) + ["AWS_ENDPOINT_URL_S3", "DAGSTER_PG_PASSWORD", "DAGSTER_HOME"]:
            os.environ.pop(k, None)


def sensor_runs(cluster):
    """The runs the @trigger sensor created, by the tags in each run's own record.

    Not by a tag filter: Dagster's run storage writes a run and its tag index in two statements, and a
    database restart between them leaves a complete run that a tag filter does not find.
    """
    with cluster.instance() as inst:
        runs = inst.get_runs(filters=RunsFilter(job_name="TriggeredFlow"))
    return [r for r in runs if r.tags.get("dagster/sensor_name") == SENSOR]


def sensor_ticks(cluster):
    """How many ticks of the @trigger sensor have finished (the daemon evaluated it in the code server)."""
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus

    with cluster.instance() as inst:
        states = [s for s in inst.all_instigator_state(instigator_type=InstigatorType.SENSOR)
                  if s.instigator_name == SENSOR]
        if not states:
            return 0
        ticks = inst.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=10000,
                               statuses=[TickStatus.SUCCESS, TickStatus.SKIPPED])
    return len(ticks)


def webserver_answers(cluster):
    try:
        return cluster.graphql("{ version }")["version"]
    except OSError:
        return None


def publish(prefix, n):
    """Publish ``n`` events with payloads ``prefix-000`` ... into the instance (Postgres); returns the payloads."""
    whos = ["%s-%03d" % (prefix, i) for i in range(n)]
    for who in whos:
        DagsterEvent("data.ready", payload={"who": who}).publish(ignore_errors=False)
    return whos


def count_exactly_once(cluster, what, published, extra_ticks=2):
    """Wait until a run exists for every payload in ``published``, let the sensor tick ``extra_ticks`` more
    times (nothing more may appear), then print and check lost and duplicated."""
    def wanted():
        return [r for r in sensor_runs(cluster) if r.run_config["ops"]["start"]["config"]["who"] in published]

    wait_for(lambda: len(wanted()) >= len(published), RUN_TIMEOUT, "%d runs for %s" % (len(published), what),
               interval=1)
    ticks = sensor_ticks(cluster)
    wait_for(lambda: sensor_ticks(cluster) >= ticks + extra_ticks, 120, "more sensor ticks", interval=1)
    whos = [r.run_config["ops"]["start"]["config"]["who"] for r in wanted()]
    lost = len(set(published) - set(whos))
    duplicated = len(whos) - len(set(whos))
    print("%s: %d events, %d runs, %d lost, %d duplicated" % (what, len(published), len(whos), lost, duplicated))
    assert (lost, duplicated) == (0, 0)


@pytest.fixture(scope="module")
def launched(cluster):
    """The two runs the first tests break, started together so their start-up overlaps."""
    return {
        "sleepy": cluster.launch("SleepyFlow", "SleepyFlow", config={"ops": {"start": {"config": {"seconds": 25}}}}),
        "killed": cluster.launch("KilledStepFlow", "KilledStepFlow"),
    }


def metaflow_run(flow_name, drun):
    from metaflow import Run, namespace

    namespace(None)
    return Run("%s/%s" % (flow_name, metaflow_run_id(drun.run_id, drun.tags)))


def test_code_server_restarted_during_a_run(cluster, launched):
    first = launched["sleepy"]

    def napping():
        with cluster.instance() as inst:
            return any(e.dagster_event.step_key == "nap"
                       for e in inst.all_logs(first, of_type=DagsterEventType.STEP_START))

    wait_for(napping, RUN_TIMEOUT, "step nap to start", interval=1)
    # SIGKILL: on SIGTERM a code server drains, waiting for its runs to finish before it exits.
    cluster.kill_code_server("SleepyFlow", signal.SIGKILL)
    with cluster.instance() as inst:
        assert not inst.get_run_by_id(first).is_finished, "the restart must happen during the run"
    cluster.start_code_server("SleepyFlow")
    second = cluster.launch("SleepyFlow", "SleepyFlow", config={"ops": {"start": {"config": {"seconds": 1}}}})
    runs = cluster.wait_runs([first, second], RUN_TIMEOUT)
    tasks = []
    for drun in runs.values():
        run = metaflow_run("SleepyFlow", drun)
        assert run.successful and run.data.result == "awake"
        tasks += [(run.id, step.id, task.id, task.current_attempt) for step in run for task in step]
    succeeded = sum(r.status == DagsterRunStatus.SUCCESS for r in runs.values())
    lost = 2 * 3 - len(tasks)
    duplicated = len(tasks) - len(set(tasks)) + sum(1 for t in tasks if t[3] != 0)
    print("code server restart: 2 runs, %d succeeded, %d tasks, %d lost, %d duplicated"
          % (succeeded, len(tasks), lost, duplicated))
    assert (succeeded, lost, duplicated) == (2, 0, 0)


def test_step_process_sigkilled_is_retried_with_the_next_retry_count(cluster, launched):
    rid = launched["killed"]

    def step_pid():
        with cluster.instance() as inst:
            for e in inst.all_logs(rid):
                if (e.user_message or "").startswith("work pid ") and e.user_message.endswith(" attempt 0"):
                    return int(e.user_message.split()[2])
        return None

    pid = wait_for(step_pid, RUN_TIMEOUT, "step work to report its pid", interval=1)
    os.kill(pid, signal.SIGKILL)
    drun = cluster.wait_runs([rid], RUN_TIMEOUT)[rid]
    assert drun.status == DagsterRunStatus.SUCCESS, cluster.explain(rid)
    with cluster.instance() as inst:
        logs = inst.all_logs(rid)
    errors = {e.dagster_event.step_key: _error_chain(e.dagster_event.event_specific_data.error) for e in logs
              if e.dagster_event and e.dagster_event.event_type == DagsterEventType.STEP_UP_FOR_RETRY}
    assert list(errors) == ["work"] and "failed with exit code -9" in errors["work"], errors
    run = metaflow_run("KilledStepFlow", drun)
    work = list(run["work"])
    assert run.data.result == 1, "the retry ran as Metaflow attempt 1 (--retry-count 1)"
    assert [t.current_attempt for t in work] == [1]
    tasks = [(s.id, t.id) for s in run for t in s]
    lost, duplicated = 3 - len(set(tasks)), len(tasks) - len(set(tasks))
    print("step SIGKILL: pid %d killed, %d retry, attempt %d, %d lost, %d duplicated"
          % (pid, len(errors), work[0].current_attempt, lost, duplicated))
    assert (lost, duplicated) == (0, 0)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the killed attempt left no process behind


def test_daemon_sigkilled_during_sensor_ticks(cluster):
    wait_for(lambda: sensor_ticks(cluster) > 0, 120, "the sensor's first tick")
    published = publish("kill", 60)
    wait_for(lambda: len(sensor_runs(cluster)) > 0, RUN_TIMEOUT, "the first runs", interval=0.5)
    cluster.daemon.kill(signal.SIGKILL)
    created = len(sensor_runs(cluster))
    cluster.start_daemon()
    print("daemon killed with %d of %d runs created" % (created, len(published)))
    assert created < len(published), "the kill must interrupt the burst"
    count_exactly_once(cluster, "daemon SIGKILL", published)


def test_postgres_restarted_between_ticks(cluster):
    """Last: a database restart cuts every connection, also those of runs in progress."""
    before = publish("pg-before", 30)
    wait_for(lambda: any(r.run_config["ops"]["start"]["config"]["who"].startswith("pg-before")
                           for r in sensor_runs(cluster)), RUN_TIMEOUT, "the first runs", interval=0.5)
    cluster.postgres.restart()
    after = publish("pg-after", 15)
    count_exactly_once(cluster, "Postgres restart", before + after)
    with cluster.instance() as inst:
        indexed = len(inst.get_runs(filters=RunsFilter(job_name="TriggeredFlow", tags={"dagster/sensor_name": SENSOR})))
    print("Postgres restart: %d sensor runs missing from Dagster's tag index" % (len(sensor_runs(cluster)) - indexed))
    assert cluster.daemon.alive() and cluster.webserver.alive(), "the servers ride out the restart"
    wait_for(lambda: webserver_answers(cluster), 60, "the webserver to answer again")


def _error_chain(error):
    """The messages of a serialized error and of its causes."""
    messages = []
    while error is not None:
        messages.append(error.message)
        error = error.cause or error.context
    return "\n".join(messages)
