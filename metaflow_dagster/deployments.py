"""Deployed flows on one Dagster instance: the workspace registry and the operations on runs.

Role. ``python flow.py dagster create`` registers each definitions file it writes as a code location of the
workspace file ``$DAGSTER_HOME/metaflow/workspace.yaml``, so one ``dagster dev -w`` over it (or a webserver and
a daemon) serves every deployed flow. A deployment is named after its Dagster job, and that name is also its
code location name; a file of several flows (``create --add-flow``) is one code location, named after its
first job, and its other jobs are found by reading the file. The workspace entry is the whole registry:
everything else about a deployment (flow name, parameters, start step, Metaflow settings) is the generated
file's ``FLOW`` literal (``FLOW_<job>`` per flow in a file of several), read with ``ast`` and never executed.
The CLI (``dagster_cli.py``) and the Deployer API (``dagster_deployer_objects.py``) both work through this
module; it needs none of Metaflow's CLI state.

Invariants:

* The workspace file is rewritten whole and atomically, entries sorted by location name, under an exclusive
  lock (``workspace.lock`` beside it), so concurrent ``create``/``delete`` calls never lose an entry. Entries
  this module did not write are kept as they are.
* A run is launched through ``dagster job launch`` against a workspace holding exactly the deployment's own
  entry (same file, working directory and location name as the shared one), so the run carries the code
  location origin the daemon and sensors of the shared workspace know, at the cost of one code server.
* The Metaflow run id of a launched run is fixed before the launch, in the ``metaflow/run_id`` tag, so the
  caller can name the run at once. Runs started elsewhere (the UI, a schedule) are found by the id the
  runtime derives from the Dagster run id.
* Dagster is imported only inside the functions that talk to an instance.
"""

import ast
import collections
import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

from metaflow.exception import MetaflowException

# Run tags of the contract with the runtime (metaflow_dagster/runtime.py).
RUN_ID_TAG = "metaflow/run_id"
ORIGIN_RUN_TAG = "metaflow/origin_run_id"
RESUME_STEP_TAG = "metaflow/resume_step"

WEBSERVER_URL_ENV = "METAFLOW_DAGSTER_WEBSERVER_URL"
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"
RELOAD_TIMEOUT_SECONDS = 5

# Metaflow's view of a Dagster run status (the names are DagsterRunStatus values).
STATUS = {
    "QUEUED": "PENDING",
    "NOT_STARTED": "PENDING",
    "STARTING": "PENDING",
    "MANAGED": "PENDING",
    "STARTED": "RUNNING",
    "SUSPENDED": "RUNNING",
    "CANCELING": "RUNNING",
    "SUCCESS": "SUCCEEDED",
    "FAILURE": "FAILED",
    "CANCELED": "FAILED",
}
FINISHED = ("SUCCEEDED", "FAILED")

_HEADER = (
    "# Deployed Metaflow flows, one code location each. Written by `python flow.py dagster create`;\n"
    "# serve them all with `dagster dev -w <this file> --use-legacy-code-server-behavior`.\n"
)


class DeploymentException(MetaflowException):
    headline = "Dagster deployment error"


# ----- where things are --------------------------------------------------------------------------------


def dagster_home(environ=None):
    """The DAGSTER_HOME of ``environ`` (default: this process) as an absolute path, or None if unset."""
    home = (os.environ if environ is None else environ).get("DAGSTER_HOME")
    return os.path.abspath(home) if home else None


def require_home(environ=None, what="this command"):
    home = dagster_home(environ)
    if not home:
        raise DeploymentException(
            "DAGSTER_HOME is not set: %s works on the Dagster instance in DAGSTER_HOME, where `dagster create` "
            "registers deployments. Set it to the directory `dagster dev` uses." % what
        )
    return home


def webserver_url(environ=None):
    env = os.environ if environ is None else environ
    return (env.get(WEBSERVER_URL_ENV) or DEFAULT_WEBSERVER_URL).rstrip("/")


def run_url(dagster_run_id, environ=None):
    """Link to a run in the Dagster UI."""
    return "%s/runs/%s" % (webserver_url(environ), dagster_run_id)


def serve_command(home):
    """The command that serves every deployment of ``home`` and picks up new ones without a restart.

    ``dagster dev`` by default starts one proxy code server per location it saw at startup and never looks at
    the workspace file again; with the legacy behaviour its webserver and daemon re-read the file on reload.
    """
    return ["dagster", "dev", "-w", Workspace(home).path, "--use-legacy-code-server-behavior"]


# ----- the registry ------------------------------------------------------------------------------------


def write_atomic(path, text):
    """Write ``text`` to ``path`` so readers see the old file or the whole new one, never a part."""
    path = os.path.abspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _entry(name, defs_path):
    defs_path = os.path.abspath(defs_path)
    return {
        "python_file": {
            "relative_path": defs_path,
            "location_name": name,
            "working_directory": os.path.dirname(defs_path),
        }
    }


def _location(entry):
    spec = entry.get("python_file") if isinstance(entry, dict) else None
    return spec.get("location_name") if isinstance(spec, dict) else None


class Workspace:
    """The workspace file of a Dagster home: one ``python_file`` code location per deployed flow."""

    def __init__(self, home):
        self.home = home
        self.dir = os.path.join(home, "metaflow")
        self.path = os.path.join(self.dir, "workspace.yaml")

    @contextlib.contextmanager
    def _locked(self):
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.dir, "workspace.lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _load(self):
        import yaml

        try:
            with open(self.path, encoding="utf-8") as f:
                doc = yaml.safe_load(f) or {}
        except FileNotFoundError:
            return []
        except yaml.YAMLError as e:
            raise DeploymentException("cannot read the workspace file %s: %s" % (self.path, e)) from None
        if not isinstance(doc, dict) or not isinstance(doc.get("load_from") or [], list):
            raise DeploymentException("%s is not a Dagster workspace file (no load_from list)" % self.path)
        return list(doc.get("load_from") or [])

    def _save(self, entries):
        import yaml

        entries = sorted(entries, key=lambda e: _location(e) or "")
        text = _HEADER + yaml.safe_dump({"load_from": entries}, default_flow_style=False, sort_keys=False)
        write_atomic(self.path, text)

    def deployments(self):
        """``{name: definitions file}`` of every deployed flow, sorted by name."""
        return {
            _location(e): e["python_file"]["relative_path"] for e in self._load() if _location(e) is not None
        }

    def get(self, name):
        """The definitions file of deployment ``name``; raises DeploymentException when there is none."""
        return self.locate(name)[1]

    def locate(self, job):
        """``(code location, definitions file)`` that serves job ``job``; raises DeploymentException if none.

        A location is named after its file's first job, so only the other jobs of a file of several flows
        cost a look into the files.
        """
        found = self.find(job)
        if found is None:
            raise DeploymentException(
                "no deployment named *%s* in %s: deploy it with `python <flow file> dagster create`"
                % (job, self.path)
            )
        return found

    def find(self, job):
        """Like locate, but None when no location serves ``job``."""
        entries = self.deployments()
        if job in entries:
            return job, entries[job]
        for location, path in entries.items():
            if job in self.jobs_of(path):
                return location, path
        return None

    @staticmethod
    def jobs_of(path):
        """The job names of a definitions file, [] when it is not one (missing, or not generated)."""
        try:
            return [flow["job_name"] for flow in read_flows(path)]
        except DeploymentException:
            return []

    def register(self, name, defs_path):
        """Add or replace deployment ``name``. Returns True if it was already registered."""
        with self._locked():
            entries = self._load()
            existed = any(_location(e) == name for e in entries)
            entries = [e for e in entries if _location(e) != name] + [_entry(name, defs_path)]
            self._save(entries)
        return existed

    def unregister(self, name):
        """Remove deployment ``name``. Returns False if it was not registered."""
        with self._locked():
            entries = self._load()
            kept = [e for e in entries if _location(e) != name]
            if len(kept) == len(entries):
                return False
            self._save(kept)
        return True


def read_flows(defs_path):
    """The FLOW literals of a generated definitions file, in file order, parsed without running the file.

    A file of one flow has ``FLOW``; a file of several has ``FLOW_<job>`` per flow.
    """
    try:
        with open(defs_path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), defs_path)
    except (OSError, SyntaxError) as e:
        raise DeploymentException("cannot read the definitions file %s: %s" % (defs_path, e)) from None
    flows = []
    for node in tree.body:
        names = [getattr(t, "id", None) or "" for t in getattr(node, "targets", ())]
        if isinstance(node, ast.Assign) and len(names) == 1 and names[0].split("_", 1)[0] == "FLOW":
            with contextlib.suppress(ValueError):
                flows.append(ast.literal_eval(node.value))
    if not flows:
        raise DeploymentException("%s is not a metaflow-dagster definitions file (it has no FLOW literal)" % defs_path)
    return flows


def read_flow(defs_path, job=None):
    """The FLOW literal of job ``job`` (default: the file's first) in a generated definitions file."""
    flows = read_flows(defs_path)
    if job is None:
        return flows[0]
    for flow in flows:
        if flow.get("job_name") == job:
            return flow
    raise DeploymentException("the definitions file %s has no job *%s*" % (defs_path, job))


# location: the code location that serves the job (``name`` unless the file holds several flows).
Deployment = collections.namedtuple("Deployment", "name home defs flow location")


def open_deployment(name, environ=None, what="this command"):
    """Deployment ``name`` of the DAGSTER_HOME in ``environ``: its home, definitions file and FLOW literal."""
    home = require_home(environ, what)
    location, defs = Workspace(home).locate(name)
    return Deployment(name, home, defs, read_flow(defs, name), location)


def origin_parameters(flow, run_id):
    """Parameter name -> value of Metaflow run ``run_id`` of ``flow``, read from its ``_parameters`` task."""
    from metaflow.datastore import FlowDataStore
    from metaflow.plugins import DATASTORES

    s = flow["settings"]
    impl = next(d for d in DATASTORES if d.TYPE == s["datastore"])
    store = FlowDataStore(flow["name"], storage_impl=impl, ds_root=s["datastore_root"])
    tasks = store.get_task_datastores(run_id=run_id, steps=["_parameters"], mode="r")
    if not tasks:
        raise DeploymentException(
            "cannot resume *%s/%s*: the run does not exist in %s (no parameters were recorded)"
            % (flow["name"], run_id, s["datastore_root"])
        )
    return {p["name"]: tasks[0][p["var"]] for p in flow["parameters"] if p["var"] in tasks[0]}


# ----- the webserver ------------------------------------------------------------------------------------


def reload_webserver(location=None, url=None, timeout=RELOAD_TIMEOUT_SECONDS):
    """Ask a running Dagster webserver to reload one code location, or the whole workspace.

    Reload ``location`` when it was already served (its code changed), else the workspace (a location was
    added or removed). Returns True if a webserver answered (or is still reloading when ``timeout`` passes),
    False if none is reachable; never raises.
    """
    if location is None:
        query = {"query": "mutation { reloadWorkspace { __typename } }"}
    else:
        query = {
            "query": "mutation($n: String!) { reloadRepositoryLocation(repositoryLocationName: $n) { __typename } }",
            "variables": {"n": location},
        }
    req = urllib.request.Request(
        "%s/graphql" % (url or webserver_url()),
        data=json.dumps(query).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read().decode() or "{}")
    except socket.timeout:
        return True
    except (OSError, ValueError):
        return False
    data = (answer.get("data") or {}).get("reloadRepositoryLocation") or {}
    if location is not None and data.get("__typename") == "RepositoryLocationNotFound":
        return reload_webserver(None, url, timeout)
    return True


# ----- runs ----------------------------------------------------------------------------------------------


def new_run_ids():
    """A fresh Dagster run id and the Metaflow run id the runtime derives from it."""
    from metaflow_dagster.runtime import metaflow_run_id as derive

    dagster_run_id = str(uuid.uuid4())
    return dagster_run_id, derive(dagster_run_id)


def config_value(param, value):
    """A Metaflow Parameter value as the start op's config field of type ``param["type"]`` takes it."""
    ptype = param["type"]
    try:
        if ptype == "int":
            return int(value)
        if ptype == "float":
            return float(value)
        if ptype == "bool":
            return value.lower() in ("1", "true", "yes", "y", "t") if isinstance(value, str) else bool(value)
        if ptype == "json":
            return value if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):
        raise DeploymentException("parameter *%s*: %r is not a valid %s" % (param["name"], value, ptype)) from None
    return str(value)


def run_config(flow, values):
    """Run config of a generated job: ``values`` (Parameter name -> value) as the start op's config."""
    params = {p["name"]: p for p in flow["parameters"]}
    unknown = sorted(set(values) - set(params))
    if unknown:
        raise DeploymentException(
            "flow *%s* was deployed without the parameter(s) %s; run `dagster create` again"
            % (flow["name"], ", ".join(unknown))
        )
    config = {name: config_value(params[name], v) for name, v in values.items() if v is not None}
    # The start op is named after the start step, behind the job's prefix in a file of several flows.
    start = flow.get("start_op", flow["start_step"])
    return {"ops": {start: {"config": config}}} if config else {}


def launch(home, name, defs_path, config, tags, dagster_run_id, location=None):
    """Submit a run of deployment ``name`` to the instance in ``home``; it starts when a daemon dequeues it.

    Runs ``dagster job launch`` (argv list, no shell) on a one-entry workspace equal to the deployment's
    shared entry (code location ``location``, by default ``name``), so the run's origin names the shared code
    location. Raises DeploymentException with the tail of Dagster's output when the launch fails.
    """
    import yaml

    location = location or name
    with tempfile.TemporaryDirectory(prefix="mfd-launch-") as tmp:
        workspace = os.path.join(tmp, "workspace.yaml")
        with open(workspace, "w", encoding="utf-8") as f:
            yaml.safe_dump({"load_from": [_entry(location, defs_path)]}, f)
        argv = [
            sys.executable, "-m", "dagster", "job", "launch",
            "-w", workspace, "-l", location, "-j", name,
            "--run-id", dagster_run_id,
            "--tags", json.dumps(tags),
            "--config-json", json.dumps(config),
        ]
        env = dict(os.environ, DAGSTER_HOME=home)
        proc = subprocess.run(argv, env=env, cwd=tmp, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise DeploymentException("Dagster did not accept the run of *%s* (%s):\n%s" % (name, dagster_run_id, tail))


@contextlib.contextmanager
def instance(home):
    """The Dagster instance of ``home`` (the one ``dagster dev`` with the same DAGSTER_HOME uses)."""
    from dagster import DagsterInstance

    if not os.path.isdir(home):
        raise DeploymentException("DAGSTER_HOME %s does not exist" % home)
    with DagsterInstance.from_config(home) as inst:
        yield inst


def metaflow_run_id(dagster_run):
    """The Metaflow run id of a Dagster run, as the runtime derives it."""
    from metaflow_dagster.runtime import metaflow_run_id as derive

    return derive(dagster_run.run_id, dagster_run.tags)


def find_run(inst, job_name, run_id):
    """The Dagster run of job ``job_name`` whose Metaflow run id is ``run_id``, or None."""
    from dagster import RunsFilter

    runs = inst.get_runs(filters=RunsFilter(job_name=job_name, tags={RUN_ID_TAG: run_id}), limit=1)
    if runs:
        return runs[0]
    if run_id.startswith("dagster-"):
        for run in inst.get_runs(filters=RunsFilter(job_name=job_name)):
            if metaflow_run_id(run) == run_id:
                return run
    return None


def get_run(inst, flow, run_id):
    """Like find_run for the deployment described by ``flow``, but raises when the run does not exist."""
    run = find_run(inst, flow["job_name"], run_id)
    if run is None:
        raise DeploymentException(
            "no Dagster run of job *%s* has the Metaflow run id *%s/%s*" % (flow["job_name"], flow["name"], run_id)
        )
    return run


def dagster_status(home, dagster_run_id):
    """The DagsterRunStatus name of a run, or None if the instance does not know the run."""
    with instance(home) as inst:
        run = inst.get_run_by_id(dagster_run_id)
        return run.status.value if run else None


def terminate(inst, dagster_run):
    """Cancel a queued run or interrupt a started one, as the UI's Terminate does. Returns False if finished."""
    from dagster._core.storage.dagster_run import CANCELABLE_RUN_STATUSES

    if dagster_run.status not in CANCELABLE_RUN_STATUSES:
        return False
    return bool(inst.run_coordinator.cancel_run(dagster_run.run_id))


def wait(home, dagster_run_id, poll=2.0, timeout=None):
    """Poll until the run finishes; returns its Metaflow status. Raises TimeoutError after ``timeout`` s."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = STATUS.get(dagster_status(home, dagster_run_id) or "", "PENDING")
        if status in FINISHED:
            return status
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError("Dagster run %s did not finish within %s seconds" % (dagster_run_id, timeout))
        time.sleep(poll)


def daemon_running(home, max_age=120.0):
    """True if a dagster-daemon heartbeat for ``home`` is recent, or the instance starts runs without one."""
    with instance(home) as inst:
        if type(inst.run_coordinator).__name__ != "QueuedRunCoordinator":
            return True
        beats = inst.get_daemon_heartbeats()
    beat = beats.get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < max_age
