"""Deployed flows on one Dagster instance: the registry, the running webserver, and the operations on runs.

Role. ``python flow.py dagster create`` writes a definitions file and records it as a deployment of the
Dagster instance in ``DAGSTER_HOME``: ``$DAGSTER_HOME/metaflow/deployments/<name>.json``. Every deployment is
served by one code location, ``metaflow``, the only entry this module writes into
``$DAGSTER_HOME/metaflow/workspace.yaml``: its code is ``$DAGSTER_HOME/metaflow/location.py`` (a copy of
``metaflow_dagster/location.py``), which loads every recorded file. So ``dagster dev -w`` over that workspace
runs one code server whatever the number of flows, a deployment is one reload of that location away, and
the location always exists, for the webserver and for the daemon that dequeues runs (docs/deploy-cli.md).

A deployment is named after its first Dagster job (a file of several flows, ``create --add-flow``, is one
deployment with several jobs). Everything else about it (flow name, parameters, start step, Metaflow
settings) is the generated file's ``FLOW`` literal (``FLOW_<job>`` per flow in a file of several), read with
``ast`` and never executed. The CLI (``dagster_cli.py``) and the Deployer API (``dagster_deployer_objects.py``)
both work through this module; it needs none of Metaflow's CLI state.

Invariants:

* Records and the workspace file are written whole and atomically, under an exclusive lock
  (``workspace.lock``), so concurrent ``create``/``delete`` calls never lose an entry. Workspace entries this
  module did not write are kept as they are; entries of the earlier one-location-per-flow layout are turned
  into records.
* A run is submitted through the running webserver (GraphQL ``launchRun``, what the UI's Launchpad sends),
  and only once that webserver serves the job from the file on disk (its ``metaflow/deployment`` tag is the
  file's digest): never for a location the server does not serve. The Metaflow run id is chosen before the
  launch and given as the ``metaflow/run_id`` tag, so the caller can name the run at once.
* Every wait is on Dagster's own state (the served job, a run status), bounded, and says what it waited for.
* Dagster is imported only inside the functions that talk to an instance. The run tags, the Metaflow run id
  and the conversion of Parameter values are the runtime's contract (``metaflow_dagster.runtime.contract``,
  standard library only), imported, never copied here.
"""

import ast
import collections
import contextlib
import fcntl
import json
import os
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from metaflow.exception import MetaflowException

from metaflow_dagster import location as loc
from metaflow_dagster.runtime.contract import RUN_ID_TAG, BadEvent, coerce_param
from metaflow_dagster.runtime.contract import metaflow_run_id as derive_run_id

WEBSERVER_URL_ENV = "METAFLOW_DAGSTER_WEBSERVER_URL"
DEFAULT_WEBSERVER_URL = "http://127.0.0.1:3000"
RELOAD_TIMEOUT_SECONDS = 300  # a reload imports every deployed file (seconds for hundreds of flows)
SERVED_TIMEOUT_SECONDS = 120

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

_WORKSPACE_HEADER = (
    "# Every Metaflow flow deployed to this Dagster instance is served by the code location `%s` below\n"
    "# (`python flow.py dagster create` writes this file). Serve them all with:\n"
    "#   dagster dev -w %%s\n" % loc.LOCATION_NAME
)

# Written where no dagster.yaml exists (create says so): the queued runs of `trigger` and of the sensors start
# within a second of the daemon's loop rather than 5 s (Dagster's default dequeue interval).
_DAGSTER_YAML = """\
# Written by `python flow.py dagster create` because this Dagster home had no dagster.yaml; edit it freely,
# metaflow-dagster never overwrites it. Runs queued by `dagster trigger` and by event sensors are started
# within a second (Dagster's default checks its run queue every 5 seconds). Run queue settings
# (max_concurrent_runs, tag_concurrency_limits) go under run_coordinator.config below: Dagster refuses a
# top-level run_queue beside run_coordinator.
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
"""


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


def serve_command(home):
    """The command that serves every deployment of ``home``: one code location, reloaded by `create`."""
    return ["dagster", "dev", "-w", Workspace(home).path]


def ensure_instance_config(home):
    """Write ``home``'s dagster.yaml when there is none (_DAGSTER_YAML). Returns its path if written."""
    path = os.path.join(home, "dagster.yaml")
    if os.path.exists(path) or os.path.exists(os.path.join(home, "dagster.yml")):
        return None
    os.makedirs(home, exist_ok=True)
    write_atomic(path, _DAGSTER_YAML)
    return path


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


def _location_of(entry):
    for kind in ("python_file", "python_module", "grpc_server", "python_package"):
        spec = entry.get(kind) if isinstance(entry, dict) else None
        if isinstance(spec, dict):
            return spec.get("location_name")
    return None


class Workspace:
    """The deployments of a Dagster home: their records, and the workspace file that serves them."""

    def __init__(self, home):
        self.home = home
        self.dir = os.path.join(home, "metaflow")
        self.path = os.path.join(self.dir, "workspace.yaml")
        self.location_file = os.path.join(self.dir, "location.py")
        self.records_dir = os.path.join(self.dir, loc.RECORDS_DIR)

    @contextlib.contextmanager
    def _locked(self):
        os.makedirs(self.records_dir, exist_ok=True)
        with open(os.path.join(self.dir, "workspace.lock"), "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def _entries(self):
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

    def _serve(self):
        """Make the workspace file serve the location (under the lock): copy location.py when it differs,
        turn entries of the one-location-per-flow layout into records, keep everything else."""
        with open(loc.__file__, encoding="utf-8") as f:
            source = f.read()
        try:
            with open(self.location_file, encoding="utf-8") as f:
                current = f.read()
        except OSError:
            current = None
        if current != source:
            write_atomic(self.location_file, source)
        entries, kept = self._entries(), []
        for entry in entries:
            name, spec = _location_of(entry), entry.get("python_file") if isinstance(entry, dict) else None
            if name == loc.LOCATION_NAME:
                continue
            if isinstance(spec, dict) and self._adopt(name, spec.get("relative_path")):
                continue
            kept.append(entry)
        ours = {"python_file": {"relative_path": self.location_file, "location_name": loc.LOCATION_NAME,
                                "working_directory": self.dir}}
        import yaml

        text = (_WORKSPACE_HEADER % self.path) + yaml.safe_dump({"load_from": [ours] + kept},
                                                               default_flow_style=False, sort_keys=False)
        try:
            with open(self.path, encoding="utf-8") as f:
                if f.read() == text:
                    return
        except OSError:
            pass
        write_atomic(self.path, text)

    def _adopt(self, name, defs_path):
        """Record an entry of the earlier layout (one location per generated file). False if it is not one."""
        try:
            flows = read_flows(defs_path) if defs_path else None
        except DeploymentException:
            flows = None
        if not flows:
            return False
        if not os.path.exists(self._record_path(name)):
            self._write_record(name, defs_path, flows)
        return True

    def _record_path(self, name):
        return os.path.join(self.records_dir, "%s.json" % name)

    def _write_record(self, name, defs_path, flows):
        record = {
            "version": loc.RECORD_VERSION,
            "name": name,
            "definitions": os.path.abspath(defs_path),
            "jobs": [f["job_name"] for f in flows],
            "flows": {f["job_name"]: f["name"] for f in flows},
        }
        write_atomic(self._record_path(name), json.dumps(record, indent=2, sort_keys=True) + "\n")

    def records(self):
        """``{name: record}`` of every deployment (see location.read_records), sorted by name."""
        return loc.read_records(self.dir)

    def deployments(self):
        """``{name: definitions file}`` of every deployment, sorted by name."""
        return {name: r.get("definitions") for name, r in self.records().items()}

    def get(self, name):
        """The definitions file of deployment ``name``; raises DeploymentException when there is none."""
        return self.locate(name)[1]

    def locate(self, job):
        """``(deployment, definitions file)`` of the deployment that has job ``job``; raises if none."""
        found = self.find(job)
        if found is None:
            raise DeploymentException(
                "no deployment named *%s* in %s: deploy it with `python <flow file> dagster create`"
                % (job, self.dir)
            )
        return found

    def find(self, job):
        """Like locate, but None when no deployment has job ``job``."""
        for name, record in self.records().items():
            if job in record.get("jobs") or ():
                return name, record.get("definitions")
        return None

    @staticmethod
    def jobs_of(path):
        """The job names of a definitions file, [] when it is not one (missing, or not generated)."""
        try:
            return [flow["job_name"] for flow in read_flows(path)]
        except DeploymentException:
            return []

    def register(self, name, defs_path, flows=None):
        """Record deployment ``name`` (``flows``: its FLOW literals, read from the file if not given) and make
        the workspace serve it. Returns True if it was already registered."""
        flows = flows if flows is not None else read_flows(defs_path)
        with self._locked():
            existed = os.path.exists(self._record_path(name))
            self._write_record(name, defs_path, flows)
            self._serve()
        return existed

    def unregister(self, name):
        """Remove deployment ``name``. Returns False if it was not registered."""
        with self._locked():
            self._serve()
            try:
                os.unlink(self._record_path(name))
            except FileNotFoundError:
                return False
        return True

    def serve(self):
        """Write what serves the deployments (location.py, the workspace file), adopting old entries."""
        with self._locked():
            self._serve()


def read_flows(defs_path):
    """The FLOW literals of a generated definitions file, in file order, parsed without running the file.

    A file of one flow has ``FLOW``; a file of several has ``FLOW_<job>`` per flow.
    """
    try:
        with open(defs_path, encoding="utf-8") as f:
            tree = ast.parse(f.read(), defs_path)
    except (OSError, SyntaxError, TypeError) as e:
        raise DeploymentException("cannot read the definitions file %s: %s" % (defs_path, e)) from None
    flows = []
    for node in tree.body:
        names = [getattr(t, "id", None) or "" for t in getattr(node, "targets", ())]
        if isinstance(node, ast.Assign) and len(names) == 1 and names[0].split("_", 1)[0] == "FLOW":
            with contextlib.suppress(ValueError):
                value = ast.literal_eval(node.value)
                if isinstance(value, dict) and "job_name" in value:
                    flows.append(value)
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


# deployment: the name of the deployment (its first job) that holds job ``name``.
Deployment = collections.namedtuple("Deployment", "name home defs flow deployment")


def open_deployment(name, environ=None, what="this command"):
    """Deployment of job ``name`` in the DAGSTER_HOME of ``environ``: home, definitions file, FLOW literal."""
    home = require_home(environ, what)
    deployment, defs = Workspace(home).locate(name)
    return Deployment(name, home, defs, read_flow(defs, name), deployment)


def origin_parameters(flow, run_id):
    """Parameter name -> value of Metaflow run ``run_id`` of ``flow``, read from its ``_parameters`` task."""
    from metaflow.datastore import FlowDataStore
    from metaflow.plugins import DATASTORES

    s = flow["settings"]
    params = {p["name"]: p for p in flow["parameters"]}
    impl = next(d for d in DATASTORES if d.TYPE == s["datastore"])
    store = FlowDataStore(flow["name"], storage_impl=impl, ds_root=s["datastore_root"])
    tasks = store.get_task_datastores(run_id=run_id, steps=["_parameters"], mode="r")
    if not tasks:
        raise DeploymentException(
            "cannot resume *%s/%s*: the run does not exist in %s (no parameters were recorded)"
            % (flow["name"], run_id, s["datastore_root"])
        )
    values = {p["name"]: tasks[0][p["var"]] for p in flow["parameters"] if p["var"] in tasks[0]}
    # A JSONType value as JSON text, as the start op's config takes it (a string value stays a JSON string).
    return {name: json.dumps(v) if params[name]["type"] == "json" else v for name, v in values.items()}


# ----- the webserver ------------------------------------------------------------------------------------


def _webserver_address(argv):
    """``http://host:port[/prefix]`` a dagster-webserver command line listens on (its defaults: 127.0.0.1:3000)."""
    opts, i = {}, 0
    while i < len(argv):
        arg = argv[i]
        for names, key in ((("-h", "--host"), "host"), (("-p", "--port"), "port"), (("-l", "--path-prefix"), "prefix")):
            if arg in names and i + 1 < len(argv):
                opts[key] = argv[i + 1]
                i += 1
            elif any(arg.startswith(n + "=") for n in names if n.startswith("--")):
                opts[key] = arg.split("=", 1)[1]
        i += 1
    host = opts.get("host") or "127.0.0.1"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = "[%s]" % host
    return "http://%s:%s%s" % (host, opts.get("port") or "3000", (opts.get("prefix") or "").rstrip("/"))


def _is_webserver(argv):
    if not argv:
        return False
    if any(os.path.basename(a) in ("dagster-webserver", "dagit") for a in argv[:2]):
        return True
    return any(a == "-m" and b == "dagster_webserver" for a, b in zip(argv, argv[1:]))


def _webserver_processes(home):
    """URLs of the dagster-webserver processes of this user whose DAGSTER_HOME is ``home`` (Linux: /proc)."""
    urls = []
    try:
        pids = [p for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return urls
    for pid in pids:
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
            if not _is_webserver(argv):
                continue
            with open("/proc/%s/environ" % pid, "rb") as f:
                env = dict(e.split(b"=", 1) for e in f.read().split(b"\0") if b"=" in e)
            their_home = env.get(b"DAGSTER_HOME")
            if not their_home:
                continue
            cwd = os.readlink("/proc/%s/cwd" % pid)
            if os.path.realpath(os.path.join(cwd, their_home.decode())) == os.path.realpath(home):
                urls.append(_webserver_address(argv))
        except (OSError, ValueError):
            continue
    return sorted(set(urls))


def _answers(url):
    try:
        with urllib.request.urlopen(url + "/server_info", timeout=5) as resp:
            return resp.status == 200
    except (OSError, ValueError):
        return False


def find_webserver(home, environ=None):
    """The URL of the running Dagster webserver of ``home``, or None.

    ``$METAFLOW_DAGSTER_WEBSERVER_URL`` when set (a webserver elsewhere, or behind a proxy); else a
    dagster-webserver process of this machine whose DAGSTER_HOME is ``home`` (``dagster dev`` starts one), on
    whatever port it listens; else the default address if the webserver there serves ``home``'s location.
    """
    env = os.environ if environ is None else environ
    if env.get(WEBSERVER_URL_ENV):
        url = env[WEBSERVER_URL_ENV].rstrip("/")
        return url if _answers(url) else None
    for url in _webserver_processes(home):
        if _answers(url):
            return url
    # Not seen as a process of this machine (another user's, a container's): the default address, only if
    # the webserver there serves this home's deployments (it may be another instance's).
    if _answers(DEFAULT_WEBSERVER_URL):
        try:
            if served(DEFAULT_WEBSERVER_URL, home).location is not None:
                return DEFAULT_WEBSERVER_URL
        except DeploymentException:
            pass
    return None


def graphql(url, query, variables=None, timeout=60):
    """``data`` of a GraphQL request to the webserver at ``url``; raises DeploymentException on any error."""
    req = urllib.request.Request(
        url + "/graphql", data=json.dumps({"query": query, "variables": variables or {}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read().decode() or "{}")
    except urllib.error.HTTPError as e:
        raise DeploymentException("the Dagster webserver at %s answered %d: %s"
                                  % (url, e.code, e.read().decode("utf-8", "replace")[:500])) from None
    except (OSError, ValueError) as e:
        raise DeploymentException("cannot reach the Dagster webserver at %s: %s" % (url, e)) from None
    if answer.get("errors"):
        raise DeploymentException("the Dagster webserver at %s refused a request: %s"
                                  % (url, "; ".join(e.get("message", "?") for e in answer["errors"])))
    return answer.get("data") or {}


_WORKSPACE_QUERY = """
{ workspaceOrError { __typename
    ... on Workspace { locationEntries { name loadStatus displayMetadata { key value }
        locationOrLoadError { __typename
          ... on RepositoryLocation { repositories { name jobs { name tags { key value } } } }
          ... on PythonError { message } } } }
    ... on PythonError { message } } }
"""

Served = collections.namedtuple("Served", "entries location jobs repositories error")


def served(url, home):
    """What the webserver at ``url`` serves: Served(entries: {location name: its python_file}, location: the
    name of the entry whose code is ``home``'s location.py or None, jobs: {job: tags} of that location,
    repositories: {job: repository}, error: that location's load error or None)."""
    data = graphql(url, _WORKSPACE_QUERY)["workspaceOrError"]
    if data["__typename"] != "Workspace":
        raise DeploymentException("the Dagster webserver at %s cannot list its workspace: %s"
                                  % (url, data.get("message")))
    ours = os.path.realpath(Workspace(home).location_file)
    entries, location, jobs, repos, error = {}, None, {}, {}, None
    for entry in data["locationEntries"]:
        meta = {m["key"]: m["value"] for m in entry.get("displayMetadata") or ()}
        entries[entry["name"]] = meta.get("python_file") or meta.get("module_name") or meta.get("host") or "?"
        if not meta.get("python_file") or os.path.realpath(meta["python_file"]) != ours:
            continue
        location = entry["name"]
        loaded = entry.get("locationOrLoadError") or {}
        if loaded.get("__typename") == "PythonError":
            error = loaded.get("message")
        for repo in loaded.get("repositories") or ():
            for job in repo["jobs"]:
                jobs[job["name"]] = {t["key"]: t["value"] for t in job["tags"]}
                repos[job["name"]] = repo["name"]
    return Served(entries, location, jobs, repos, error)


def reload_location(url, name=loc.LOCATION_NAME, timeout=RELOAD_TIMEOUT_SECONDS):
    """Have the webserver at ``url`` reload code location ``name`` (its code server restarts and the daemon
    follows); returns when the webserver has the new snapshot. Raises DeploymentException."""
    query = """mutation($n: String!) { reloadRepositoryLocation(repositoryLocationName: $n) { __typename
        ... on WorkspaceLocationEntry { loadStatus } ... on Error { message } } }"""
    try:
        data = graphql(url, query, {"n": name}, timeout=timeout)["reloadRepositoryLocation"]
    except DeploymentException as e:
        if "timed out" in str(e):
            raise DeploymentException("the Dagster webserver at %s did not reload code location %s within %d s"
                                      % (url, name, timeout)) from None
        raise
    if data["__typename"] == "RepositoryLocationNotFound":
        graphql(url, "mutation { reloadWorkspace { __typename } }", timeout=timeout)
    elif data["__typename"] != "WorkspaceLocationEntry":
        raise DeploymentException("the Dagster webserver at %s cannot reload code location %s: %s"
                                  % (url, name, data.get("message") or data["__typename"]))


def how_to_serve(home):
    return "serve the deployments of %s with `%s`" % (home, " ".join(serve_command(home)))


def ensure_served(url, home, jobs, digest, timeout=SERVED_TIMEOUT_SECONDS):
    """Make sure the webserver at ``url`` serves every job of ``jobs`` from the file whose digest is ``digest``
    (its ``metaflow/deployment`` tag), reloading the location once if it does not yet; waits on the served
    snapshot, for at most ``timeout`` seconds, and returns it (Served). Raises DeploymentException, saying
    what was waited for, when the server does not serve this instance's deployments, a job is broken, or the
    wait times out."""
    deadline, reloaded = time.monotonic() + timeout, False
    while True:
        state = served(url, home)
        if state.location is None:
            raise DeploymentException(
                "the Dagster webserver at %s does not serve the deployments of DAGSTER_HOME=%s (it serves %s): %s"
                % (url, home, ", ".join("%s (%s)" % kv for kv in sorted(state.entries.items())) or "nothing",
                   how_to_serve(home)))
        missing = [j for j in jobs if state.jobs.get(j, {}).get(loc.DEPLOYMENT_TAG) != digest]
        broken = [state.jobs[j][loc.BROKEN_TAG] for j in jobs if loc.BROKEN_TAG in state.jobs.get(j, {})]
        if not missing:
            return state
        if broken and reloaded:
            raise DeploymentException(broken[0])
        if state.error and reloaded:
            raise DeploymentException("code location %s of the Dagster webserver at %s does not load: %s"
                                      % (state.location, url, state.error))
        if time.monotonic() > deadline:
            raise DeploymentException(
                "timed out after %d s waiting for the Dagster webserver at %s to serve job(s) %s of the current "
                "definitions (digest %s)" % (timeout, url, ", ".join(missing), digest))
        if not reloaded:
            reload_location(url, state.location)
            reloaded = True
        else:
            time.sleep(0.5)


def launch(url, location, repository, job, config, tags):
    """Launch a run of ``job`` through the webserver at ``url``, as the Launchpad's button does (GraphQL
    ``launchRun``); it is queued for the daemon. Returns the Dagster run id. Raises DeploymentException with
    Dagster's reason (invalid config, unknown job...)."""
    query = """mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename
        ... on LaunchRunSuccess { run { runId } }
        ... on RunConfigValidationInvalid { errors { message } }
        ... on Error { message } } }"""
    params = {
        "selector": {"repositoryLocationName": location, "repositoryName": repository, "jobName": job},
        "runConfigData": config,
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in sorted(tags.items())]},
    }
    data = graphql(url, query, {"p": params})["launchRun"]
    if data["__typename"] == "LaunchRunSuccess":
        return data["run"]["runId"]
    reason = "; ".join(e["message"] for e in data.get("errors") or ()) or data.get("message") or data["__typename"]
    raise DeploymentException("Dagster did not accept the run of *%s*: %s" % (job, reason))


def job_url(url, repository, job):
    """Link to a deployed job (of deployment ``repository``) in the Dagster UI at ``url``."""
    return "%s/locations/%s@%s/jobs/%s" % (url.rstrip("/"), repository, loc.LOCATION_NAME, urllib.parse.quote(job))


def run_url(dagster_run_id, url=None, environ=None):
    """Link to a run in the Dagster UI at ``url`` (default: $METAFLOW_DAGSTER_WEBSERVER_URL or the default)."""
    env = os.environ if environ is None else environ
    base = url or (env.get(WEBSERVER_URL_ENV) or DEFAULT_WEBSERVER_URL)
    return "%s/runs/%s" % (base.rstrip("/"), dagster_run_id)


# ----- runs ----------------------------------------------------------------------------------------------


def new_run_id():
    """A fresh Metaflow run id for a run to launch, of the runtime's form (never an integer)."""
    return "dagster-" + uuid.uuid4().hex[:20]


def config_value(param, value):
    """A Metaflow Parameter value as the start op's config field of type ``param["type"]`` takes it."""
    if param["type"] == "file":
        return str(value)
    try:
        return coerce_param(param["type"], value, "parameter *%s*" % param["name"])
    except BadEvent as e:
        raise DeploymentException(str(e)) from None


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


@contextlib.contextmanager
def instance(home):
    """The Dagster instance of ``home`` (the one ``dagster dev`` with the same DAGSTER_HOME uses)."""
    from dagster import DagsterInstance

    if not os.path.isdir(home):
        raise DeploymentException("DAGSTER_HOME %s does not exist" % home)
    with DagsterInstance.from_config(home) as inst:
        yield inst


def metaflow_run_id(dagster_run, inst=None):
    """The Metaflow run id of a Dagster run, as the runtime derives it (given ``inst``, a re-execution without
    its root's tags reads them, as the runtime does)."""
    root = dagster_run.root_run_id
    if inst is not None and root and RUN_ID_TAG not in dagster_run.tags:
        record = inst.get_run_by_id(root)
        return derive_run_id(root, record.tags if record is not None else None)
    return derive_run_id(dagster_run.run_id, dagster_run.tags, root)


def find_run(inst, job_name, run_id):
    """The latest Dagster run of job ``job_name`` whose Metaflow run id is ``run_id``, or None. Re-executions
    (the UI's) continue their group's Metaflow run, so the latest run of that group says how it ended."""
    from dagster import RunsFilter


    found = inst.get_runs(filters=RunsFilter(job_name=job_name, tags={RUN_ID_TAG: run_id}), limit=1)
    if not found and run_id.startswith("dagster-"):
        found = [r for r in inst.get_runs(filters=RunsFilter(job_name=job_name)) if metaflow_run_id(r, inst) == run_id]
    if not found:
        return None
    group = inst.get_run_group(found[0].run_id)
    runs = [r for r in (group[1] if group else [found[0]]) if r.job_name == job_name]
    return max(runs, key=lambda r: inst.get_run_record_by_id(r.run_id).create_timestamp)


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
    if dagster_run.is_finished:
        return False
    return bool(inst.run_coordinator.cancel_run(dagster_run.run_id))


def wait(home, dagster_run_id, poll=1.0, timeout=None):
    """Poll the run's status until it finishes; returns its Metaflow status. Raises TimeoutError after
    ``timeout`` seconds. The instance is opened once for the whole wait."""
    deadline = None if timeout is None else time.monotonic() + timeout
    with instance(home) as inst:
        while True:
            run = inst.get_run_by_id(dagster_run_id)
            status = STATUS.get(run.status.value if run else "", "PENDING")
            if status in FINISHED:
                return status
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("Dagster run %s did not finish within %s seconds" % (dagster_run_id, timeout))
            time.sleep(poll)


def failure_reason(inst, dagster_run_id):
    """Why a finished Dagster run failed, for a Metaflow user: each failed step with the task, attempt and the
    user's exception (its op's Failure, see runtime._task_failure), else the run's own failure (a launch that
    failed, a location that did not load, a termination). None if the run did not fail."""
    from dagster import DagsterEventType

    run = inst.get_run_by_id(dagster_run_id)
    if run is None or run.status.value not in ("FAILURE", "CANCELED"):
        return None
    if run.status.value == "CANCELED":
        return "the run was terminated"
    steps = []
    for record in inst.get_records_for_run(dagster_run_id, of_type=DagsterEventType.STEP_FAILURE).records:
        event = record.event_log_entry.dagster_event
        data = event.step_failure_data
        user = data.user_failure_data if data is not None else None
        text = (user.description if user is not None and user.description else
                (data.error.message.strip() if data is not None and data.error else "it failed"))
        steps.append("step %s failed: %s" % (event.step_key, text))
    if steps:
        return "\n".join(steps)
    for record in reversed(inst.get_records_for_run(dagster_run_id).records):
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None:
            continue
        error = getattr(event.event_specific_data, "error", None)
        if event.event_type in (DagsterEventType.RUN_FAILURE, DagsterEventType.ENGINE_EVENT) and error is not None:
            return "%s%s" % (entry.message or "", ": " + error.message.strip() if error.message else "")
        if event.event_type == DagsterEventType.RUN_FAILURE:
            return entry.message or "the run failed"
    return "the run failed (no reason was recorded)"


def daemon_running(inst, max_age=120.0):
    """True if a dagster-daemon heartbeat of ``inst`` is recent, or the instance starts runs without one."""
    if type(inst.run_coordinator).__name__ != "QueuedRunCoordinator":
        return True
    beat = inst.get_daemon_heartbeats().get("QUEUED_RUN_COORDINATOR")
    return beat is not None and time.time() - beat.timestamp < max_age

