"""The contract of the runtime with the rest of metaflow-dagster: names, ids and values every part agrees on.

Run tags and task environment variables, Metaflow run and task ids, the tokens ops pass, the Parameter value
converter, and events (asset keys, signatures, what a task emits). The deployment commands
(``metaflow_dagster.deployments``) and the event publishers (``metaflow_dagster.events``) import these names
rather than copying them. Needs only the standard library (Dagster lazily, for asset keys).

Model. Every Metaflow task is run by one Dagster op. Ops pass *tokens* to each other: small dicts that name
the Metaflow task an op produced::

    {"step": "a", "task": "dagster-1f2e/a/t-3", "idx": [3], "split": None, "dead": False}

``idx`` is the foreach index stack of the task (outermost first) and determines its task id (``t`` at top
level, ``t-3-1`` two foreach levels deep). ``split`` is set on the tokens a foreach op fans out: the child
takes it as ``--split-index``. A *dead* token marks a switch case that was not taken inside a foreach body,
where Dagster cannot skip ops (fan-in is not allowed downstream of a dynamic output): ops handed only dead
tokens pass a dead token on without running anything. Op inputs may be a token, a list of tokens (a
collect or a fan-in) or a bundle (the list of tokens a barrier op re-keys); the runtime flattens them and
keeps the tokens of the step's own predecessors.

Invariants: run ids and task ids are never integers (Metaflow's metadata skips those).
"""

import hashlib
import hmac
import json
import time

RUN_ID_TAG = "metaflow/run_id"
ROOT_RUN_ID_TAG = "dagster/root_run_id"  # set by Dagster on every re-execution of a run
DEPLOYMENT_TAG = "metaflow/deployment"  # job tag: the sha256 of the definitions file that defines the job
JOB_FLOW_TAG = "metaflow/flow"
TRIGGER_ENV = "METAFLOW_DAGSTER_TRIGGERS"
PARAMETERS_ENV = "METAFLOW_DAGSTER_RUN_PARAMETERS"  # a re-run task of a resume: its run's _parameters task
ORIGIN_RUN_TAG = "metaflow/origin_run_id"
RESUME_STEP_TAG = "metaflow/resume_step"
PARAMS_TASK_ID = "params"
CODE_CACHE_ENV = "METAFLOW_DAGSTER_CODE_CACHE"  # where workers keep extracted code packages
TRIGGERS_TAG = "metaflow/triggers"
EVENT_ASSET_PREFIX = "metaflow_event"
SIGNATURE_FIELD = "signature"
MAX_PAYLOAD_BYTES = 256 * 1024


def _file_digest(path):
    """The short sha256 of the file at ``path`` ("" when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()[:16]
    except OSError:
        return ""


# The runtime is pasted into the generated file, so this is the digest of the definitions file (the deployment).
_DEFINITIONS_DIGEST = _file_digest(__file__)


class StaleDefinitionsError(Exception):
    """The flow file changed after ``create``; the plan in this file no longer describes it."""


class BadEvent(Exception):
    """An event that cannot start a run; the sensor skips it and logs this reason (``event_id``: its id)."""

    def __init__(self, reason, event_id=None):
        super().__init__(reason)
        self.event_id = event_id


def task_id_for(idx, iteration=0):
    """Task id of the task at foreach index stack ``idx`` (and recursive-switch ``iteration``)."""
    tid = "t" + "".join("-%d" % i for i in idx)
    return tid if not iteration else "%s-r%d" % (tid, iteration)


def metaflow_run_id(dagster_run_id, tags=None, root_run_id=None):
    """The Metaflow run id of a Dagster run: its ``metaflow/run_id`` tag, else derived from the Dagster run id
    (``dagster-`` + 20 hex digits, never an integer).

    A re-execution (the UI's "Re-execute": a run with a ``root_run_id``) continues the Metaflow run of its run
    group, so its id derives from the root run's id. (A root run with a ``metaflow/run_id`` tag passes it on:
    Dagster copies a parent's tags to its re-executions; FlowRuntime.run_id reads the root's tags when a
    re-execution was launched without them.)
    """
    tags = tags or {}
    root = root_run_id or tags.get(ROOT_RUN_ID_TAG)
    return tags.get(RUN_ID_TAG) or "dagster-" + (root or dagster_run_id).replace("-", "")[:20]


def mapping_key(idx):
    """Dagster mapping key for a foreach index stack: ``3_1``; ``top`` for the empty stack."""
    return "_".join(str(i) for i in idx) or "top"


def flatten_tokens(inputs):
    """Flatten op inputs (tokens, lists of tokens, bundles, nested lists) into a list of tokens."""
    out = []
    stack = [inputs]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            out.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif item is not None:
            raise TypeError("unexpected op input %r" % (item,))
    return out


def param_env_value(ptype, value):
    """Render a parameter value as Metaflow's ``init`` reads it from ``METAFLOW_INIT_<NAME>``."""
    if ptype == "bool":
        return "true" if value else "false"
    if ptype == "json" and not isinstance(value, str):
        return json.dumps(value)
    return str(value)


def coerce_param(ptype, value, where):
    """``value`` from an event payload converted to a Parameter of type ``ptype``, as run config."""
    if isinstance(value, (dict, list)) and ptype != "json":
        raise BadEvent("%s: expected a %s, got a JSON %s" % (where, ptype, type(value).__name__))
    try:
        if ptype == "json":
            if isinstance(value, str):
                json.loads(value)
                return value
            return json.dumps(value)
        if ptype == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("true", "1", "yes"):
                return True
            if text in ("false", "0", "no"):
                return False
            raise ValueError(value)
        if isinstance(value, bool):
            raise ValueError(value)
        if ptype == "int":
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value) if not isinstance(value, str) else int(value.strip())
        if ptype == "float":
            return float(value)
        return value if isinstance(value, str) else str(value)
    except (TypeError, ValueError):
        raise BadEvent("%s: %r is not a valid %s" % (where, value, ptype)) from None


def event_asset_key(name):
    """The asset key of event ``name``: ``metaflow_event/<name>``, lossless for every valid event name."""
    from dagster import AssetKey

    return AssetKey([EVENT_ASSET_PREFIX, name])


def event_signature(fields, secret):
    """The signature of an event for ``@trigger(options={"secret_env": NAME})``: ``sha256=`` and the hex
    HMAC-SHA256, keyed with ``secret``, of every field but ``signature`` as canonical JSON (keys sorted, no
    spaces, UTF-8). The event's ``id`` is signed, so a replayed event has the run key of the first one."""
    body = json.dumps({k: v for k, v in fields.items() if k != SIGNATURE_FIELD},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return "sha256=" + hmac.new(secret.encode("utf-8"), body.encode("utf-8"), hashlib.sha256).hexdigest()


def emitted_events(flow, step):
    """Names of the events a successful task of ``step`` publishes, as Argo's auto-emit names them (the compiler
    names them: FLOW["steps"][step]["emits"]).

    The end step always publishes ``metaflow.<project flow name or Flow>.<end step>``, plus the ``.end``
    alias that ``@trigger_on_finish`` listens for when the end step has another name; other steps publish
    ``metaflow.<...>.<step>`` only when ``create --emit-step-events`` was given.
    """
    return flow["steps"][step]["emits"]


def emitted_payload(flow, pathspec, now):
    """Payload of the events a task emits: Metaflow's envelope and Argo's fields, all strings.

    ``id`` is the task's pathspec, so a retried task re-sends the same id and consumers drop it.
    """
    flow_name, run_id, step, task_id = pathspec.split("/")
    payload = {
        "id": pathspec,
        "timestamp": str(int(now)),
        "utc_date": time.strftime("%Y%m%d", time.gmtime(now)),
        "generated-by-metaflow": "True",
        "pathspec": pathspec,
        "flow_name": flow_name,
        "run_id": run_id,
        "step_name": step,
        "task_id": task_id,
    }
    project = flow.get("project")
    if project:
        # As Argo: the fields `current` has, the two flags only when true.
        payload.update({"project_name": project["name"], "branch_name": project["branch"]})
        if project["branch"].startswith("user."):
            payload["is_user_branch"] = "True"
        if project["production"]:
            payload["is_production"] = "True"
        payload["project_flow_name"] = project["flow_name"]
    payload["auto-generated-by-metaflow"] = "True"
    return payload
