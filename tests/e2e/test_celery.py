"""Dagster's Celery executor, end to end on this machine: the steps of one run on two Celery workers.

Debian's redis-server is the broker and result backend, on a free port in a temporary directory. Two
`dagster-celery worker start` processes (each a Celery main process and its prefork pool) have their own
working directory, Dagster home and code-package cache: what they share with the run worker and with each
other is what hosts share, the Postgres instance storage, the S3-API datastore (moto) holding the code
package and the op outputs (runtime/tokens.py), and Redis. Metaflow's metadata stays local, as in
test_distributed.py (the session's METAFLOW_DATASTORE_SYSROOT_LOCAL; a metadata service in production). The
definitions file is at one path for all, as dagster-celery requires (workers load the job from it); the flow
sources are deleted before any worker starts, so tasks run from the code package.

Runs are executed by `dagster job execute` (the run worker: it submits each step to Celery and waits), or
launched by `dagster-daemon run` from the flows' sensors. Steps are routed to the queue `big`, which only the
second worker serves, with `create --celery-queue STEP=QUEUE`. Results are read through the Metaflow client
and the Dagster instance.

Workers and executor share docs/deploy.md's `config_source` as written there: late acknowledgement, so the
steps of a worker that dies whole are delivered again to another one once Redis's visibility timeout has
passed (short here, longer than the longest step in production), and no `task_reject_on_worker_lost`, so a
step whose own process dies fails the run instead of coming back forever.
"""

import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import types

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus

from metaflow_dagster.runtime import ORIGIN_RUN_TAG
from tests.helpers import FLOWS, REEXECUTE_FROM_FAILURE, flow_literal, free_port, metaflow_run, wait_for
from tests.infra import BIN, Process, doc_blocks, postgres, s3  # noqa: F401 (postgres, s3: pytest fixtures)

WORKERS = ("w1", "w2")      # w2 also serves the queue `big`
BIG = "big"
TRIGGER = "trigger_flow.py"
CHAIN = ("chain_a_flow.py", "chain_b_flow.py")
RUN_TIMEOUT = 240
VISIBILITY_TIMEOUT = 30  # s: a step's message goes back to its queue this long after a worker took it unacked


def _config_source():
    """The workers' Celery settings as docs/deploy.md gives them, with a visibility timeout short enough for a
    test and a check for expired messages every second."""
    import yaml

    (text,) = [body for kind, _, body in doc_blocks("deploy.md", "celery") if kind == "worker-config"]
    source = yaml.safe_load(text)["execution"]["config"]["config_source"]
    source["broker_transport_options"].update(visibility_timeout=VISIBILITY_TIMEOUT, unacked_restore_interval=1)
    return source


CONFIG_SOURCE = _config_source()
EXECUTOR_CONFIG = {"broker": {"env": "DAGSTER_CELERY_BROKER_URL"}, "backend": {"env": "DAGSTER_CELERY_BACKEND_URL"},
                   "config_source": CONFIG_SOURCE}


class Redis:
    """redis-server on 127.0.0.1:``port``, persisting nothing, in ``root``."""

    def __init__(self, root):
        self.root = root
        self.port = free_port()
        self.url = "redis://127.0.0.1:%d" % self.port
        self.server = Process(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", root,
                               "--save", "", "--appendonly", "no"], os.path.join(root, "redis.log"), cwd=root)
        wait_for(self._up, 30, "redis-server to answer PING (log: %s)" % self.server.log_path, 0.2)

    def _up(self):
        assert self.server.alive(), "redis-server exited:\n" + self.server.log_tail()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def _dagster_yaml(home, postgres, db):  # noqa: F811
    import yaml

    os.makedirs(home, exist_ok=True)
    # No local compute-log capture: a worker on another host would keep it on its own disk, out of the UI's
    # reach (production uses a shared one, such as dagster-aws's S3ComputeLogManager), and it costs each step
    # four `tail` processes. Step output is checked in Metaflow's logs and the run's event log.
    config = {"storage": postgres.storage_config(db), "telemetry": {"enabled": False},
              "compute_logs": {"module": "dagster.core.storage.noop_compute_log_manager",
                               "class": "NoOpComputeLogManager"},
              # As `create` sets up an instance: the daemon launches a queued run within a second.
              "run_coordinator": {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator",
                                  "config": {"dequeue_interval_seconds": 1}},
              # Daemons these flows do not use; each one polls the storage.
              "auto_materialize": {"enabled": False, "use_sensors": False}, "freshness": {"enabled": False}}
    with open(os.path.join(home, "dagster.yaml"), "w") as f:
        yaml.safe_dump(config, f)
    return home


class CeleryCluster:
    """The run worker's environment, the definitions files and the two Celery workers."""

    def __init__(self, root, postgres, s3, redis):  # noqa: F811
        self.root = root
        db = postgres.create_database("celery")
        self.home = _dagster_yaml(os.path.join(root, "run_home"), postgres, db)
        self.broker = redis.url + "/0"
        self.env = dict(
            os.environ, **s3.env(), METAFLOW_DEFAULT_DATASTORE="s3", DAGSTER_PG_PASSWORD=postgres.password,
            DAGSTER_CELERY_BROKER_URL=self.broker, DAGSTER_CELERY_BACKEND_URL=redis.url + "/1",
            PATH=BIN + os.pathsep + os.environ["PATH"],
        )
        self.defs = {}
        self.workers = {}
        self.postgres, self.pg_db, self.redis = postgres, db, redis

    def create(self, src, fixtures):
        """`create --executor celery` of each of ``fixtures`` ({flow file: more create arguments}), side by
        side; each must upload its code package."""
        env = dict(self.env, METAFLOW_DAGSTER_CODE_CACHE=os.path.join(self.root, "create-cache"))
        env.pop("DAGSTER_HOME", None)
        procs = []
        for fixture, args in fixtures.items():
            # Named like the module it deploys, never `celery.py`: Dagster puts the file's directory on sys.path.
            out = os.path.join(self.root, "defs", fixture.replace("_flow.py", "_defs.py"))
            argv = [sys.executable, os.path.join(src, fixture), "dagster", "create", out, "--executor", "celery",
                    "--executor-config", json.dumps(EXECUTOR_CONFIG), *args]
            procs.append((out, subprocess.Popen(argv, cwd=src, env=env, stdout=subprocess.PIPE,
                                                stderr=subprocess.STDOUT, text=True)))
        for out, proc in procs:
            output = proc.communicate(timeout=300)[0]
            assert proc.returncode == 0 and "Uploaded the code package" in output, output
            self.defs[flow_literal(out)["job_name"]] = out

    def start_worker(self, name, queues):
        """`dagster-celery worker start` in a directory of its own, with its own Dagster home (same database)
        and code-package cache, two pool processes."""
        wdir = os.path.join(self.root, "worker-" + name)
        os.makedirs(wdir, exist_ok=True)
        home = _dagster_yaml(os.path.join(wdir, "dagster_home"), self.postgres, self.pg_db)
        config = os.path.join(wdir, "celery.yaml")
        with open(config, "w") as f:
            # The executor's config, as a run config's `execution` section: what dagster-celery reads.
            json.dump({"execution": {"config": {"broker": self.broker, "backend": self.env["DAGSTER_CELERY_BACKEND_URL"],
                                                "config_source": CONFIG_SOURCE}}}, f)
        env = dict(self.env, DAGSTER_HOME=home, METAFLOW_DAGSTER_CODE_CACHE=os.path.join(wdir, "code-cache"))
        argv = [os.path.join(BIN, "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-n", name,
                "-y", config, "-q", ",".join(queues), "--", "--concurrency=2"]  # one -Q: Celery keeps the last
        self.workers[name] = Process(argv, os.path.join(wdir, "worker.log"), env=env, cwd=wdir)

    def app(self):
        from celery import Celery

        return Celery("dagster", broker=self.broker, backend=self.env["DAGSTER_CELERY_BACKEND_URL"])

    def wait_workers(self, names):
        app = self.app()

        def answering():
            for n in names:
                assert self.workers[n].alive(), "worker %s exited:\n%s" % (n, self.workers[n].log_tail())
            replies = app.control.ping(timeout=1.0)
            got = {name.split("@")[0] for reply in replies for name in reply}
            return set(names) <= got

        wait_for(answering, 120, "Celery workers %s to answer a ping" % ", ".join(names), 0.5)

    def instance(self):
        os.environ["DAGSTER_PG_PASSWORD"] = self.env["DAGSTER_PG_PASSWORD"]
        return DagsterInstance.from_config(self.home)

    def execute(self, job, config=None, tags=None, background=False):
        """`dagster job execute` of ``job`` (the run worker, here); returns the Popen (``background``) or the
        finished Dagster run."""
        argv = [sys.executable, "-m", "dagster", "job", "execute", "-f", self.defs[job], "-j", job]
        if config:
            path = os.path.join(self.root, "config-%s.json" % len(os.listdir(self.root)))
            with open(path, "w") as f:
                json.dump(config, f)
            argv += ["-c", path]
        if tags:
            argv += ["--tags", json.dumps(tags)]
        env = dict(self.env, DAGSTER_HOME=self.home)
        log = open(os.path.join(self.root, "run-%s.log" % job), "ab")
        proc = subprocess.Popen(argv, cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        log.close()
        if background:
            return proc
        try:
            proc.wait(RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the run of %s did not finish within %ds" % (job, RUN_TIMEOUT))
        return self.latest_run(job)

    def latest_run(self, job):
        from dagster import RunsFilter

        with self.instance() as inst:
            return inst.get_runs(filters=RunsFilter(job_name=job), limit=1)[0]

    def events(self, run_id, kind):
        with self.instance() as inst:
            return [e for e in inst.all_logs(run_id) if e.dagster_event and e.dagster_event.event_type == kind]

    def explain(self, run_id):
        import logging

        with self.instance() as inst:
            lines = [e.user_message for e in inst.all_logs(run_id) if e.level >= logging.ERROR]
        return "\n".join(lines[-20:]) + "\n" + "\n".join(w.log_tail(15) for w in self.workers.values())

    def stop(self):
        for w in self.workers.values():
            w.stop(grace=5)


@pytest.fixture(scope="module")
def cluster(postgres, s3, tmp_path_factory):  # noqa: F811
    root = str(tmp_path_factory.mktemp("celery"))
    src = os.path.join(root, "src")
    os.makedirs(src)
    for fixture in ("celery_flow.py", "celery_kill_flow.py", TRIGGER) + CHAIN:
        shutil.copy(os.path.join(FLOWS, fixture), src)
    redis_dir = os.path.join(root, "redis")
    os.makedirs(redis_dir)
    redis = Redis(redis_dir)
    c = CeleryCluster(root, postgres, s3, redis)
    client_env = {k: v for k, v in s3.env().items() if k.startswith("AWS_")}
    os.environ.update(client_env, AWS_ENDPOINT_URL_S3=s3.url)
    try:
        c.create(src, {"celery_flow.py": ["--celery-queue", "end=" + BIG], "celery_kill_flow.py": [],
                       TRIGGER: [], CHAIN[0]: [], CHAIN[1]: []})
        shutil.rmtree(src)  # from here on, only the code packages hold the flows' code
        c.instance().dispose()  # the instance's schema, created once before the workers race to create it
        c.start_worker("w1", ["dagster"])
        c.start_worker("w2", ["dagster", BIG])
        c.wait_workers(WORKERS)
        yield c
    finally:
        c.stop()
        redis.server.stop(grace=5)
        for k in list(client_env) + ["AWS_ENDPOINT_URL_S3"]:
            os.environ.pop(k, None)


def test_foreach_runs_on_both_workers_and_the_queue_routes_a_step(cluster):
    drun = cluster.execute("CeleryFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, cluster.explain(drun.run_id)
    run = metaflow_run("CeleryFlow", drun)
    assert run.successful
    assert run["join"].task.data.squares == sorted(i * i for i in range(20))
    assert run["join"].task.data.total == sum(i * i for i in range(20))
    body = list(run["body"])
    assert sorted(t.data.square for t in body) == sorted(i * i for i in range(20))
    # Per-step logs: what each task printed, in Metaflow's logs and in the run's Dagster event log.
    assert all(t.stdout.strip() == "square of %d" % t.index for t in body), [t.stdout for t in body]
    with cluster.instance() as inst:
        messages = [e.user_message for e in inst.all_logs(drun.run_id) if e.step_key == "body[7]"]
    assert any("square of 7" in m for m in messages), messages
    # Each task's worker, as Metaflow task metadata: the Celery worker's name, then its pool process.
    ran_on = {t.pathspec: t.metadata_dict["dagster-worker"] for t in body}
    assert {w.split("@")[0] for w in ran_on.values()} == set(WORKERS), ran_on
    assert run["end"].task.metadata_dict["dagster-worker"].startswith("w2@")  # only w2 serves `big`
    # ... and as the op's output metadata in Dagster's event log.
    outputs = cluster.events(drun.run_id, DagsterEventType.STEP_OUTPUT)
    op_worker = {e.step_key: e.dagster_event.step_output_data.metadata["worker"].value for e in outputs
                 if "worker" in e.dagster_event.step_output_data.metadata}
    body_workers = {v for k, v in op_worker.items() if k.startswith("body[")}
    assert len([k for k in op_worker if k.startswith("body[")]) == 20
    assert body_workers == set(ran_on.values()), (body_workers, ran_on)
    assert op_worker["end"].startswith("w2@")
    submitted = [e.message for e in cluster.events(drun.run_id, DagsterEventType.ENGINE_EVENT)
                 if "Submitting celery task" in (e.message or "")]
    assert 'Submitting celery task for step "end" to queue "big".' in submitted, submitted


@contextlib.contextmanager
def _item_2_running(cluster, name):
    """A run of CeleryKillFlow in the background (its files named after ``name``), once item 2 runs on a worker:
    yields its run config, release file, Metaflow task pid, op pid (the Celery pool process) and run worker
    (a Popen), which is killed on the way out if it is still running."""
    started = os.path.join(cluster.root, name + "-started")
    release = os.path.join(cluster.root, name + "-release")
    config = {"ops": {"start": {"config": {"started": started, "release": release}}}}
    proc = cluster.execute("CeleryKillFlow", config=config, background=True)
    try:
        wait_for(lambda: os.path.exists(started), RUN_TIMEOUT, "item 2 of CeleryKillFlow to start on a worker", 0.2)
        task_pid, op_pid = map(int, open(started).read().split())
        yield types.SimpleNamespace(config=config, release=release, task_pid=task_pid, op_pid=op_pid, proc=proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_killed_worker_process_fails_the_run_naming_the_step_then_resume_and_reexecution_complete_it(cluster):
    with _item_2_running(cluster, "kill") as item:
        # The Celery pool process running the op, and the Metaflow task it started: a worker process dies.
        os.kill(item.op_pid, signal.SIGKILL)
        os.kill(item.task_pid, signal.SIGKILL)
        item.proc.wait(RUN_TIMEOUT)
    config, release = item.config, item.release
    parent = cluster.latest_run("CeleryKillFlow")
    assert parent.status == DagsterRunStatus.FAILURE
    failure = cluster.explain(parent.run_id)
    assert "body[2]" in failure and "WorkerLostError" in failure, failure
    origin = metaflow_run("CeleryKillFlow", parent)
    done = {t.index: t.id for t in origin["body"] if t.finished}
    assert sorted(done) == [0, 1], done
    assert sorted(t.data.double for t in origin["body"] if t.finished) == [0, 2]

    open(release, "w").close()
    # Metaflow's resume, on Celery: a new run that clones the finished tasks and runs the rest.
    resumed = cluster.execute("CeleryKillFlow", config=config, tags={ORIGIN_RUN_TAG: origin.id})
    assert resumed.status == DagsterRunStatus.SUCCESS, cluster.explain(resumed.run_id)
    run = metaflow_run("CeleryKillFlow", resumed)
    assert run.id != origin.id and run["join"].task.data.doubles == [0, 2, 4]
    clones = {t.index: t.metadata_dict.get("origin-task-id") for t in run["body"]}
    assert {i: clones[i] for i in (0, 1)} == done and clones[2] is None, clones

    # Dagster's re-execution from failure, on Celery: the failed step and what follows, in the same Metaflow run.
    res = subprocess.run([sys.executable, "-c", REEXECUTE_FROM_FAILURE, cluster.defs["CeleryKillFlow"], "CeleryKillFlow",
                          parent.run_id], env=dict(cluster.env, DAGSTER_HOME=cluster.home), cwd=cluster.root,
                         capture_output=True, text=True, timeout=RUN_TIMEOUT)
    child = cluster.latest_run("CeleryKillFlow")
    assert res.returncode == 0 and child.parent_run_id == parent.run_id, res.stdout[-3000:] + res.stderr[-3000:]
    child = child.run_id
    ran = [e.step_key for e in cluster.events(child, DagsterEventType.STEP_SUCCESS)]
    assert sorted(ran) == ["body[2]", "end", "join"], ran
    continued = metaflow_run("CeleryKillFlow", cluster.latest_run("CeleryKillFlow"))
    assert continued.id == origin.id and continued.successful
    assert continued["join"].task.data.doubles == [0, 2, 4]


SENSED = ("TriggeredFlow", "chain_user_tester_ChainBFlow")  # the jobs whose sensors the daemon ticks


@pytest.fixture(scope="module")
def daemon(cluster):
    """`dagster-daemon run` on the run worker's instance, with the definitions files of SENSED as its workspace:
    it ticks their sensors and launches the runs they request (a run worker each, which submits the steps to
    Celery), as in production."""
    import yaml

    workspace = os.path.join(cluster.root, "workspace.yaml")
    with open(workspace, "w") as f:
        yaml.safe_dump({"load_from": [{"python_file": {"relative_path": cluster.defs[job], "location_name": job}}
                                      for job in SENSED]}, f)
    d = Process([os.path.join(BIN, "dagster-daemon"), "run", "-w", workspace], os.path.join(cluster.root, "daemon.log"),
                env=dict(cluster.env, DAGSTER_HOME=cluster.home), cwd=cluster.root)
    try:
        yield d
    finally:
        d.stop(grace=10)


@functools.lru_cache(maxsize=None)
def _sensor_name(defs, job):
    import runpy

    (name,) = [s.name for s in runpy.run_path(defs)["defs"].sensors if s.job_name == job]
    return name


def _sensor_ticks(cluster, job):
    """The finished ticks of the sensor of ``job``, newest first, as the daemon recorded them."""
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus

    name = _sensor_name(cluster.defs[job], job)
    with cluster.instance() as inst:
        states = [s for s in inst.all_instigator_state(instigator_type=InstigatorType.SENSOR) if s.instigator_name == name]
        if not states:
            return []
        return inst.get_ticks(states[0].instigator_origin_id, states[0].selector_id, limit=100,
                              statuses=[TickStatus.SUCCESS, TickStatus.SKIPPED])


def _launched_run(cluster, daemon, job):
    """The run of ``job`` the daemon launched, once it has finished."""
    from dagster import RunsFilter

    def finished():
        assert daemon.alive(), "dagster-daemon exited:\n" + daemon.log_tail()
        with cluster.instance() as inst:
            runs = inst.get_runs(filters=RunsFilter(job_name=job), limit=2)
        assert len(runs) <= 1, "more than one run of %s: %s" % (job, [r.run_id for r in runs])
        return runs[0] if runs and runs[0].is_finished else None

    return wait_for(finished, RUN_TIMEOUT, "a finished run of %s launched by its sensor (daemon log: %s)"
                    % (job, daemon.log_path), 0.5)


def test_trigger_and_trigger_on_finish_chain_run_on_celery(cluster, daemon):
    from metaflow_dagster.events import envelope
    from metaflow_dagster.runtime import publish_event

    head, tail = "chain_user_tester_ChainAFlow", "chain_user_tester_ChainBFlow"
    wait_for(lambda: all(_sensor_ticks(cluster, job) for job in SENSED), 180,
             "the daemon's first ticks of the sensors of %s (log: %s)" % (", ".join(SENSED), daemon.log_path), 0.5)
    with cluster.instance() as inst:
        publish_event(inst, "data.ready", envelope("data.ready", {"who": "celery", "alpha": "0.25"}))
    drun = _launched_run(cluster, daemon, "TriggeredFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, cluster.explain(drun.run_id)
    run = metaflow_run("TriggeredFlow", drun)
    assert run["end"].task.data.values == (0.25, "celery", {"k": 0})
    assert run["start"].task.data.start_trigger[0] == "data.ready"
    assert run["end"].task.metadata_dict["dagster-worker"].split("@")[0] in WORKERS

    up = cluster.execute(head, config={"ops": {"start": {"config": {"seed": 4}}}})
    assert up.status == DagsterRunStatus.SUCCESS, cluster.explain(up.run_id)
    # The end task, on a Celery worker, published ChainAFlow's end event to the instance; ChainBFlow's sensor,
    # ticked by the daemon, turns it into one run, which runs on Celery too and reads the upstream run's data.
    down = _launched_run(cluster, daemon, tail)
    assert down.status == DagsterRunStatus.SUCCESS, cluster.explain(down.run_id)
    upstream = metaflow_run("ChainAFlow", up)
    chained = metaflow_run("ChainBFlow", down)
    assert chained["start"].task.data.upstream == upstream.pathspec
    assert chained["start"].task.data.total == sum([40, 41, 42])
    assert chained.trigger.run.pathspec == upstream.pathspec
    # One run per upstream success: a tick after the downstream run ended requests no other.
    with cluster.instance() as inst:
        ended = inst.get_run_record_by_id(down.run_id).end_time
    wait_for(lambda: any(t.timestamp > ended for t in _sensor_ticks(cluster, tail)), 60,
             "a tick of %s's sensor after its run ended (daemon log: %s)" % (tail, daemon.log_path), 0.5)
    _launched_run(cluster, daemon, tail)  # still the one run


def test_a_worker_killed_whole_has_its_step_delivered_to_the_other_and_the_run_completes(cluster):
    with _item_2_running(cluster, "host") as item:
        (dead,) = [name for name, w in cluster.workers.items() if os.getpgid(item.op_pid) == w.pid]
        # A host gone: the Celery worker's main process, its pool and the Metaflow task, at once, with no word
        # to the broker. The step's message was not acknowledged, so Redis hands it to the other worker once
        # the visibility timeout has passed.
        cluster.workers[dead].signal_group(signal.SIGKILL)
        try:
            os.kill(item.task_pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        cluster.workers[dead].proc.wait(60)
        open(item.release, "w").close()
        item.proc.wait(RUN_TIMEOUT + VISIBILITY_TIMEOUT)
    drun = cluster.latest_run("CeleryKillFlow")
    assert drun.status == DagsterRunStatus.SUCCESS, cluster.explain(drun.run_id)
    run = metaflow_run("CeleryKillFlow", drun)
    assert run.successful and run["join"].task.data.doubles == [0, 2, 4]
    (item2,) = [t for t in run["body"] if t.index == 2]
    # The attempt the dead worker started keeps its number; the survivor's is the next one.
    assert item2.current_attempt == 1, item2.current_attempt
    survivor = item2.metadata_dict["dagster-worker"].split("@")[0]
    assert survivor in WORKERS and survivor != dead, (survivor, dead)
    # Dagster's event log shows the step delivered twice: to the worker that died, then to the survivor.
    delivered = [e.dagster_event.engine_event_data.metadata["Celery worker"].value
                 for e in cluster.events(drun.run_id, DagsterEventType.ENGINE_EVENT)
                 if "Executing steps body[2] in celery worker" in (e.message or "")]
    assert [w.split("@")[0] for w in delivered] == [dead, survivor], delivered
