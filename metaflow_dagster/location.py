"""The one Dagster code location that serves every flow deployed to an instance.

``python flow.py dagster create`` writes a definitions file per deployment and a small record of it in
``$DAGSTER_HOME/metaflow/deployments/<name>.json``; this module, copied verbatim to
``$DAGSTER_HOME/metaflow/location.py``, is the code location ``metaflow`` of
``$DAGSTER_HOME/metaflow/workspace.yaml``. One ``dagster dev -w`` over that workspace thus starts one code
server whatever the number of deployed flows, and a new deployment is one reload of that location away
(docs/deploy-cli.md, "Serving").

* The location has a repository per deployment, named after it (op names are unique per repository, and
  every flow has a ``start``), and ``__metaflow_events__``, the event assets of them all, one per event.
* A code server (and the webserver or daemon asking it for a snapshot) gets every job, schedule, sensor and
  event asset of every deployment. A deployment whose file does not load (deleted, stale, broken) becomes a
  placeholder job of the same name whose description and ``metaflow/broken`` tag say why, and whose run
  fails with that reason: the other deployments keep serving and running.
* Each repository is lazy (``RepositoryData``, Dagster's public interface for lazy repositories): a run
  worker asks one repository for one job and imports only that deployment's file.
* ``python -m metaflow_dagster.location check FILE`` loads one definitions file as a code server does and
  prints what it defines as JSON (``create`` runs it before it writes or registers anything);
  ``python location.py status`` reports every deployment of the instance (``list``).

It needs only ``dagster`` and the standard library where it runs, as the definitions files do.
"""

import glob
import hashlib
import importlib.util
import json
import os
import sys
import traceback

LOCATION_NAME = "metaflow"
RECORDS_DIR = "deployments"
BROKEN_TAG = "metaflow/broken"
DEPLOYMENT_TAG = "metaflow/deployment"
RECORD_VERSION = 1


def read_records(root):
    """The deployment records under ``root`` (``$DAGSTER_HOME/metaflow``), by deployment name.

    A record is ``{"version", "name", "definitions", "jobs": [...], "flows": {job: flow}}``. One that cannot
    be read is returned as ``{"name", "error"}`` so the deployment still shows, as broken.
    """
    records = {}
    for path in sorted(glob.glob(os.path.join(root, RECORDS_DIR, "*.json"))):
        name = os.path.basename(path)[: -len(".json")]
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            if not isinstance(record, dict) or not isinstance(record.get("jobs"), list):
                raise ValueError("not a deployment record")
            record.setdefault("name", name)
        except (OSError, ValueError) as e:
            record = {"name": name, "jobs": [name], "flows": {}, "definitions": None,
                      "error": "its record %s cannot be read: %s" % (path, e)}
        records[record["name"]] = record
    return records


def file_digest(path):
    """The short sha256 a deployed definitions file is known by (the ``metaflow/deployment`` job tag)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:16]


def load_definitions(path, module_name):
    """Import the definitions file at ``path`` as module ``module_name``; returns its ``defs`` (Definitions)."""
    from dagster import Definitions

    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError("%s is not a Python file" % path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # as an import would: pickling (run launchers) finds the module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    defs = getattr(module, "defs", None)
    if not isinstance(defs, Definitions):
        raise ImportError("%s defines no `defs = Definitions(...)`: it is not a metaflow-dagster definitions file" % path)
    return defs


def _error_text(exc_info):
    """The last line of an exception (its type and message), without Dagster's or importlib's frames."""
    lines = traceback.format_exception_only(*exc_info[:2])
    return "".join(lines).strip()


class _Loaded:
    """What one deployment contributes: jobs by name, schedules, sensors and event asset specs, or its error."""

    def __init__(self, record):
        self.record = record
        self.error = record.get("error")
        self.jobs, self.schedules, self.sensors, self.assets = {}, [], [], []
        if self.error is None:
            self._load()
        if self.error is not None:
            self.jobs = {job: _broken_job(job, record, self.error) for job in record["jobs"]}

    def _load(self):
        path = self.record.get("definitions")
        try:
            if not path or not os.path.isfile(path):
                raise FileNotFoundError("its definitions file %s does not exist" % path)
            defs = load_definitions(path, "metaflow_deployment_" + _identifier(self.record["name"]))
            self.jobs = {job.name: job for job in defs.jobs or ()}
            self.schedules = list(defs.schedules or ())
            self.sensors = list(defs.sensors or ())
            self.assets = list(defs.assets or ())
        except FileNotFoundError as e:
            self.error = str(e)
        except Exception:
            self.error = _error_text(sys.exc_info())
        except SystemExit as e:
            self.error = "the file exited while loading (SystemExit %s)" % (e.code,)


def _identifier(name):
    return "".join(c if c.isalnum() else "_" for c in name)


def _broken_job(job_name, record, error):
    """A job standing in for ``job_name`` of a deployment that cannot load: the UI shows it, with the reason
    in its description and ``metaflow/broken`` tag, and a run of it fails with that reason."""
    from dagster import Failure, job, op

    flow = (record.get("flows") or {}).get(job_name) or "?"
    message = "deployment %s (flow %s, %s) cannot load: %s" % (
        record["name"], flow, record.get("definitions") or "no definitions file", error)

    @op(name="deployment_cannot_load", description=message)
    def _cannot_load(context):
        raise Failure(description=message)

    @job(name=job_name, description="BROKEN: " + message, tags={BROKEN_TAG: message[:2000]})
    def _placeholder():
        _cannot_load()

    return _placeholder


def _merge_assets(specs):
    """Event asset specs of every deployment, one per key: flows of several files listening to one event
    share its asset, whose description then names them all."""
    from dagster import AssetSpec

    by_key = {}
    for spec in specs:
        by_key.setdefault(spec.key, []).append(spec)
    merged = []
    for key in sorted(by_key, key=lambda k: k.to_user_string()):
        same = by_key[key]
        if len(same) == 1:
            merged.append(same[0])
            continue
        text = "; ".join(dict.fromkeys(s.description for s in same if s.description))
        merged.append(AssetSpec(key, description=text or None, group_name=same[0].group_name))
    return merged


EVENTS_REPOSITORY = "__metaflow_events__"  # the event assets of every deployment, one asset per event


def _lazy(load):
    """A ``RepositoryData`` whose content is ``load()`` (a RepositoryDefinition), built on first use: a run
    worker asks one repository for one job and imports only that deployment's file."""
    from dagster import RepositoryData

    class Lazy(RepositoryData):
        def __init__(self):
            self._repo = None

        def _full(self):
            if self._repo is None:
                self._repo = load()
            return self._repo

        def get_all_jobs(self):
            return self._full().get_all_jobs()

        def get_job(self, job_name):
            return self._full().get_job(job_name)

        def get_all_schedules(self):
            return self._full().schedule_defs

        def get_all_sensors(self):
            return self._full().sensor_defs

        def get_source_assets_by_key(self):
            return self._full().source_assets_by_key

        def get_assets_defs_by_key(self):
            return self._full().assets_defs_by_key

        def get_asset_checks_defs_by_key(self):
            return self._full().asset_checks_defs_by_key

        def get_top_level_resources(self):
            return {}

        def get_env_vars_by_top_level_resource(self):
            return {}

    return Lazy()


def repositories(root):
    """``{attribute: RepositoryDefinition}`` of the code location: one repository per deployment recorded
    under ``root`` (op names are unique per repository, and every flow has a ``start``), named after it,
    plus one holding the event assets of them all. Nothing is imported until a repository is used."""
    from dagster import Definitions
    from dagster import repository as repository_decorator

    records = read_records(root)
    loaded = {}

    def load(name):
        if name not in loaded:
            loaded[name] = _Loaded(records[name])
        return loaded[name]

    def deployment(name):
        it = load(name)
        return Definitions(jobs=list(it.jobs.values()), schedules=it.schedules, sensors=it.sensors).get_repository_def()

    def events():
        return Definitions(assets=_merge_assets([a for name in records for a in load(name).assets])).get_repository_def()

    repos = {}
    for name, record in records.items():
        description = "Metaflow deployment %s: %s" % (name, ", ".join(
            "flow %s" % flow for flow in sorted(set((record.get("flows") or {}).values()))) or "?")
        repos["repo_" + name] = repository_decorator(name=name, description=description)(
            lambda name=name: _lazy(lambda: deployment(name)))
    if records:
        repos["repo" + EVENTS_REPOSITORY] = repository_decorator(
            name=EVENTS_REPOSITORY, description="The Metaflow events that start deployed flows")(
            lambda: _lazy(events))
    return repos


def check(path):
    """Load the definitions file at ``path`` as a code server does: import it, build its repository, every
    job's run config schema, schedule and sensor. Returns ``{"jobs", "schedules", "sensors", "assets"}``;
    raises whatever the file raises."""
    from dagster import Definitions

    defs = load_definitions(path, "metaflow_deployment_check")
    Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    jobs = repo.get_all_jobs()
    for job_def in jobs:
        job_def.run_config_schema  # noqa: B018 - resolves every config field (defaults are type-checked here)
    return {
        "jobs": sorted(j.name for j in jobs if not j.name.startswith("__")),  # not Dagster's own (__ASSET_JOB)
        "schedules": sorted(s.name for s in repo.schedule_defs),
        "sensors": sorted(s.name for s in repo.sensor_defs),
        "assets": sorted(k.to_user_string() for k in repo.assets_defs_by_key),
    }


def status(root):
    """``{deployment: {"ok", "error", "jobs", "flows", "definitions"}}`` for every deployment under ``root``."""
    out = {}
    for name, record in read_records(root).items():
        loaded = _Loaded(record)
        out[name] = {"ok": loaded.error is None, "error": loaded.error, "jobs": record.get("jobs") or [],
                     "flows": record.get("flows") or {}, "definitions": record.get("definitions")}
    return out


def main(argv=None):
    """``check FILE`` or ``status [ROOT]``: JSON on stdout; exit 0, or 1 when the file (check) does not load."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) == 2 and args[0] == "check":
        try:
            result = {"ok": True, **check(os.path.abspath(args[1]))}
        except BaseException:
            result = {"ok": False, "error": _error_text(sys.exc_info()), "traceback": traceback.format_exc()}
        print(json.dumps(result))
        return 0 if result["ok"] else 1
    if args[:1] == ["status"] and len(args) <= 2:
        print(json.dumps(status(os.path.abspath(args[1]) if len(args) == 2 else os.path.dirname(__file__))))
        return 0
    print("usage: location.py check DEFINITIONS_FILE | status [ROOT]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
elif os.path.isdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), RECORDS_DIR)):
    # Loaded as the code location (the copy in $DAGSTER_HOME/metaflow): a repository per deployment.
    globals().update(repositories(os.path.dirname(os.path.abspath(__file__))))
