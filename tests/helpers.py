"""Helpers that drive the real tools as a user does: `python flow.py dagster create`, `dagster job execute`."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from contextlib import contextmanager

FLOWS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flows")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Python 3.11's AST constructor keeps its recursion depth in per-interpreter state: two threads parsing at
# once can fail with "SystemError: AST constructor recursion depth mismatch" (seen in test_differential).
_AST_LOCK = threading.Lock()


def _parse(path):
    """``ast.parse`` of a file, one thread at a time."""
    import ast

    with open(path) as f, _AST_LOCK:
        return ast.parse(f.read())


def flow_path(name):
    return os.path.join(FLOWS, name)


class Result:
    def __init__(self, proc):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr

    def __repr__(self):
        return "exit %d\n--- stdout\n%s\n--- stderr\n%s" % (self.returncode, self.stdout[-4000:], self.stderr[-4000:])


class DagsterProject:
    """A working directory plus a persistent DAGSTER_HOME."""

    def __init__(self, workdir, dagster_home):
        self.workdir = workdir
        self.home = dagster_home

    def env(self, **extra):
        env = dict(os.environ)
        env["DAGSTER_HOME"] = self.home
        env.update({k: str(v) for k, v in extra.items()})
        return env

    def run(self, argv, timeout=600, **env):
        proc = subprocess.run(
            argv, cwd=self.workdir, env=self.env(**env), capture_output=True, text=True, timeout=timeout
        )
        return Result(proc)

    def create(self, flow_file, out="defs.py", args=(), top=(), check=True, **env):
        """Run `python FLOW [top...] dagster create OUT [args...]`; returns (path of OUT, Result)."""
        out_path = os.path.join(self.workdir, out)
        res = self.run([sys.executable, flow_file, *top, "dagster", "create", out_path, *args], **env)
        if check:
            assert res.returncode == 0, res
        return out_path, res

    def execute(self, defs, job, config=None, tags=None, check=None, timeout=900):
        """Run `dagster job execute -f DEFS -j JOB` on this project's instance; returns (Dagster run, Result)."""
        argv = [sys.executable, "-m", "dagster", "job", "execute", "-f", defs, "-j", job]
        if config:
            cfg = os.path.join(self.workdir, "run_config.json")
            with open(cfg, "w") as f:
                json.dump(config, f)
            argv += ["-c", cfg]
        if tags:
            argv += ["--tags", json.dumps(tags)]
        res = self.run(argv, timeout=timeout)
        run = self.latest_run(job)
        if check is not None:
            assert (res.returncode == 0) == check, res
        return run, res

    def instance(self):
        from dagster import DagsterInstance

        os.environ["DAGSTER_HOME"] = self.home
        return DagsterInstance.get()

    def latest_run(self, job):
        from dagster import RunsFilter

        with self.instance() as inst:
            runs = inst.get_runs(filters=RunsFilter(job_name=job), limit=1)
            return runs[0] if runs else None

    def run_logs(self, run_id):
        with self.instance() as inst:
            return inst.all_logs(run_id)


def metaflow_run(flow_name, dagster_run):
    """The Metaflow Run that a Dagster run of a generated job produced (a re-execution: its root's run)."""
    from metaflow import Run, namespace

    namespace(None)
    from metaflow_dagster.runtime import metaflow_run_id

    return Run("%s/%s" % (flow_name, metaflow_run_id(dagster_run.run_id, dagster_run.tags, dagster_run.root_run_id)))


def hold_runs(project):
    """Make the project's instance keep every run queued (max_concurrent_runs: 0), so a test counts what
    sensors create. It goes under run_coordinator's config: Dagster refuses a top-level run_queue beside it."""
    import yaml

    path = os.path.join(project.home, "dagster.yaml")
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    config.setdefault("run_coordinator", {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"})
    config["run_coordinator"].setdefault("config", {})["max_concurrent_runs"] = 0
    with open(path, "w") as f:
        yaml.safe_dump(config, f)


def flow_literal(defs_path):
    """The FLOW literal of a generated definitions file, read without executing it."""
    import ast

    for node in _parse(defs_path).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "FLOW":
            return ast.literal_eval(node.value)
    raise AssertionError("no FLOW literal in %s" % defs_path)


def doc_ir():
    """The example IR of docs/ir.md (a two-step flow, start -> end), a fresh copy."""
    with open(os.path.join(REPO, "docs", "ir.md"), encoding="utf-8") as f:
        doc = f.read()
    return json.loads(doc.split("## Example", 1)[1].split("```json\n", 1)[1].split("```", 1)[0])


def compiled_literal(ir):
    """The FLOW literal the C core writes for ``ir``: what the runtime reads, with every name it decided."""
    import ast

    from metaflow_dagster import _core

    for node in ast.parse(_core.compile(ir, "")).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "FLOW":
            return ast.literal_eval(node.value)
    raise AssertionError("no FLOW literal")


def flow_literals(defs_path):
    """Every ``FLOW_<job>`` literal of a file of several flows, by job name, read without executing it."""
    import ast

    return {node.targets[0].id[len("FLOW_"):]: ast.literal_eval(node.value)
            for node in _parse(defs_path).body
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "").startswith("FLOW_")}


def wait_for(predicate, timeout, what, interval=1.0):
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out after %ss waiting for %s" % (timeout, what)
        time.sleep(interval)


class DagsterDev:
    """`dagster dev -w $DAGSTER_HOME/metaflow/workspace.yaml -p PORT`, the command `create` prints, on a
    project's instance: webserver, daemon and the one code server of every deployment.

    ``start`` writes the workspace file if no `create` has yet, creates the instance's storage first (two
    processes creating it at once can corrupt its schema version table), and returns once the webserver
    answers and the daemon's run queue heartbeats. The server runs in its own process group (with its code
    servers and run workers), which ``stop`` ends. Its output is ``dev.log`` in the project's workdir. The
    port is a free one, never Dagster's default: the deployment commands must find it by themselves.
    """

    def __init__(self, project, port=None, log_name="dev.log"):
        self.project = project
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = None
        self.log_path = os.path.join(project.workdir, log_name)

    def start(self, timeout=240):
        import time

        from dagster import DagsterInstance

        from metaflow_dagster import deployments

        workspace = deployments.Workspace(self.project.home)
        workspace.serve()
        DagsterInstance.from_config(self.project.home).dispose()
        started = time.time()
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dagster", "dev", "-w", workspace.path, "-p", str(self.port)],
                cwd=self.project.workdir, env=self.project.env(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        wait_for(lambda: self._alive() and webserver_up(self.url), timeout,
                 "the webserver of dagster dev at %s (log: %s)" % (self.url, self.log_path))
        wait_for(lambda: self._beating(started), timeout, "the daemon of dagster dev (log: %s)" % self.log_path)
        return self

    def _alive(self):
        assert self.proc.poll() is None, "dagster dev exited:\n" + self.log_tail()
        return True

    def _beating(self, since):
        from dagster import DagsterInstance

        self._alive()
        with DagsterInstance.from_config(self.project.home) as inst:
            beat = inst.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
            return beat is not None and beat.timestamp > since

    def pids(self):
        """Pids of every process of the server's process group (webserver, daemon, code servers, runs)."""
        out = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if os.getpgid(int(pid)) == self.proc.pid:
                        out.append(int(pid))
                except OSError:
                    continue
        return out

    def log_tail(self, n=60):
        with open(self.log_path) as f:
            return "".join(f.readlines()[-n:])

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        # A test's instance is thrown away with it: 10 s for dagster dev to stop its children, then SIGKILL.
        for sig, grace in ((signal.SIGTERM, 10), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(grace)
                break
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
        try:  # its children (code servers, run workers) may outlive it a moment: end the whole group
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def free_port():
    """A loopback TCP port nothing is bound to, for a server started next.

    It is drawn below the kernel's ephemeral range (ip_local_port_range), so the outgoing connections the
    tests make (Postgres, S3, HTTP clients) cannot take it between this check and the server's bind, as a
    port the kernel hands out (bind to 0) could be.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            ephemeral = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    draw = random.SystemRandom()
    for _ in range(200):
        port = draw.randrange(10000, max(ephemeral, 10001))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free TCP port between 10000 and %d" % ephemeral)


class Server:
    """A Dagster process in its own process group, stopped (with its children) at the end."""

    def __init__(self, project, argv, log_name):
        self.log = open(os.path.join(project.workdir, log_name), "w")
        self.proc = subprocess.Popen(argv, cwd=project.workdir, env=project.env(), stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def kill(self, sig=signal.SIGTERM):
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(30)
        self.log.close()


def webserver_up(url):
    """Whether the Dagster webserver at ``url`` answers its /server_info."""
    try:
        with urllib.request.urlopen(url + "/server_info", timeout=5) as resp:
            return resp.status == 200
    except OSError:
        return False


@contextmanager
def dagster_dev(project, files, timeout=240):
    """`dagster dev -f FILE ...` (webserver and daemon) on the project's instance; yields the webserver's URL
    once it answers, and stops the whole process group at the end. Its output is dev.log in the workdir."""
    port = free_port()
    argv = [sys.executable, "-m", "dagster", "dev", "-p", str(port)]
    for path in files:
        argv += ["-f", path]
    server = Server(project, argv, "dev.log")
    url = "http://127.0.0.1:%d" % port
    try:
        wait_for(lambda: webserver_up(url), timeout, "dagster dev (dev.log in %s)" % project.workdir)
        yield url
    finally:
        server.kill()


def cli_params(params):
    """Parameters (name -> Python value) as `python flow.py run` / `dagster trigger` options."""
    argv = []
    for name, value in (params or {}).items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, (dict, list)):
            text = json.dumps(value)
        else:
            text = str(value)
        argv += ["--" + name, text]
    return argv


def native_run(workdir, flow_file, params=None, top=(), env=None, timeout=600):
    """Run `python FLOW [top...] run [--PARAM VALUE ...]` in ``workdir``; returns the run's pathspec.

    Fails with the run's output when it does not succeed. Uses only subprocesses, so threads may call it.
    """
    rid = os.path.join(workdir, "native_run_id")
    argv = [sys.executable, flow_file, *top, "run", "--run-id-file", rid, *cli_params(params)]
    proc = subprocess.run(argv, cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, Result(proc)
    with open(rid) as f:
        return "%s/%s" % (flow_class_name(flow_file), f.read().strip())


def flow_class_name(flow_file):
    """The FlowSpec class name a fixture flow file defines (its `class X(FlowSpec)`), read without importing it."""
    import ast

    for node in _parse(flow_file).body:
        if isinstance(node, ast.ClassDef) and any(getattr(b, "id", None) == "FlowSpec" for b in node.bases):
            return node.name
    raise AssertionError("no FlowSpec class in %s" % flow_file)


def deployed_run(project, flow_file, params=None, top=(), timeout=600):
    """Deploy ``flow_file`` and run it once on Dagster with ``params`` (name -> Python value); returns the
    Metaflow pathspec of the run. Fails with Dagster's output when the run does not succeed.

    This is the one place that says how a deployed run is started: today `python FLOW [top...] dagster
    create defs.py` and `dagster job execute` with the Parameters as the start op's run config, as typed
    values (JSON as its text). It uses only subprocesses and the project's own instance, so threads may call
    it for different projects.
    """
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from metaflow_dagster.runtime import metaflow_run_id

    defs, _ = project.create(flow_file, top=top)
    flow = flow_literal(defs)
    types = {p["name"]: p["type"] for p in flow["parameters"]}
    config = {k: json.dumps(v) if types[k] == "json" else v for k, v in (params or {}).items()}
    argv = [sys.executable, "-m", "dagster", "job", "execute", "-f", defs, "-j", flow["job_name"]]
    if config:
        path = os.path.join(project.workdir, "run_config.json")
        with open(path, "w") as f:
            json.dump({"ops": {flow["start_step"]: {"config": config}}}, f)
        argv += ["-c", path]
    res = project.run(argv, timeout=timeout)
    with DagsterInstance.from_config(project.home) as inst:
        runs = inst.get_runs(filters=RunsFilter(job_name=flow["job_name"]), limit=1)
    assert runs and runs[0].status == DagsterRunStatus.SUCCESS and res.returncode == 0, res
    return "%s/%s" % (flow["name"], metaflow_run_id(runs[0].run_id, runs[0].tags))


# ----- comparing two runs through the Metaflow client ------------------------------------------------------


def artifact_names(task):
    """Every artifact of a task, Metaflow's own (`_foreach_stack`, `_transition`, `_task_ok`, ...) included:
    iterating a Task leaves those out, so the names are asked of the client's metadata provider, as
    that iteration does."""
    objs = task._metaflow.metadata.get_object("task", "artifact", {}, task._attempt, *task.path_components)
    return sorted(o["name"] for o in objs or ())


def snapshot(pathspec):
    """Every task of a run with its artifacts: {(step, foreach index path, n): {name: value}}.

    ``n`` orders the tasks of one step and index path by creation (a recursive switch runs its step again
    and again in one path); the `_parameters` task, which iterating a Run leaves out, is included.
    """
    from metaflow import Run, Step, namespace

    namespace(None)
    run = Run(pathspec)
    steps = [s for s in run] + [Step(pathspec + "/_parameters")]
    tasks = {}
    for step in steps:
        groups = {}
        for task in step:
            artifacts = {name: task[name].data for name in artifact_names(task)}
            path = tuple(frame.index for frame in artifacts.get("_foreach_stack") or ())
            groups.setdefault(path, []).append((task.created_at, artifacts))
        for path, group in groups.items():
            group.sort(key=lambda x: x[0])
            for n, (_, artifacts) in enumerate(group):
                tasks[(step.id, path, n)] = artifacts
    return tasks


# The repr of a function or other object in a value (the attributes of a decorator given a lambda, in
# `_graph_info`) holds its memory address, which differs between any two processes.
ADDRESS = re.compile(r" at 0x[0-9a-f]+>")


def same(a, b):
    """Whether two artifact values are equal, dicts in the same key order; objects without value equality (an
    exception @catch stored) compare by their attributes, and memory addresses in reprs are not (ADDRESS)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, str):
        return a == b or ADDRESS.sub(" at 0x?>", a) == ADDRESS.sub(" at 0x?>", b)
    if isinstance(a, dict):  # in order: a task that iterates a dict sees its order
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    try:
        if a == b:
            return True
    except Exception:
        pass
    if hasattr(a, "__dict__") and type(a).__eq__ is object.__eq__:
        return same(vars(a), vars(b))
    return False


def differences(native, deployed, ignored=()):
    """What differs between two snapshots (a native run's and a Dagster run's), as lines, and the number of
    artifacts compared; artifacts named in ``ignored`` are not compared."""
    out, compared = [], 0
    steps = sorted({k[0] for k in native}), sorted({k[0] for k in deployed})
    if steps[0] != steps[1]:
        out.append("steps: native %s, dagster %s" % steps)
    for step in sorted(set(steps[0]) & set(steps[1])):
        n = sorted(k for k in native if k[0] == step)
        d = sorted(k for k in deployed if k[0] == step)
        if n != d:
            out.append("step %s: tasks native %s, dagster %s" % (step, [k[1:] for k in n], [k[1:] for k in d]))
        for key in sorted(set(n) & set(d)):
            a, b = native[key], deployed[key]
            if a.keys() != b.keys():
                out.append("%s: artifacts only native %s, only dagster %s"
                           % (key, sorted(a.keys() - b.keys()), sorted(b.keys() - a.keys())))
            for name in sorted(a.keys() & b.keys()):
                if name in ignored:
                    continue
                compared += 1
                if not same(a[name], b[name]):
                    out.append("%s %s: native %r, dagster %r" % (key, name, a[name], b[name]))
    return out, compared


# Dagster's "Re-execute from failure" through its Python API, in a new process: argv DEFS JOB PARENT_RUN_ID;
# exits 0 when the re-execution succeeds.
REEXECUTE_FROM_FAILURE = """
import sys
from dagster import DagsterInstance, ReexecutionOptions, execute_job
from dagster._core.definitions.reconstruct import ReconstructableJob

defs, job, parent = sys.argv[1:]
with DagsterInstance.get() as instance:
    options = ReexecutionOptions.from_failure(parent, instance)
    with execute_job(ReconstructableJob.for_file(defs, job), instance=instance, reexecution_options=options) as r:
        sys.exit(0 if r.success else 1)
"""
