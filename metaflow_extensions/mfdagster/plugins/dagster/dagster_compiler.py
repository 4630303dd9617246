"""Builds the flow IR (docs/ir.md) from Metaflow's processed graph and hands it to the C core.

This module holds no graph logic of its own: every field is read from Metaflow objects after the CLI has
applied config mutators, `--with` decorators and deploy-time values. The C core (`metaflow_dagster._core`)
checks the IR, lowers it and emits the definitions file; this module then parses the text with `ast.parse`
and writes it atomically.
"""

import ast
import hashlib
import json
import os
import re
import sys

from metaflow import current
from metaflow._vendor import click
from metaflow.exception import MetaflowException
from metaflow.includefile import FilePathClass
from metaflow.parameters import JSONTypeClass, deploy_time_eval

from .exception import DagsterException

IR_VERSION = 1

# Environment variables forwarded to tasks at run time, read from the worker's own environment.
# Values are never written into the generated file. A trailing `*` is a prefix match.
# `create --forward-env NAME` adds names or prefixes. The cloud credentials are those Metaflow's S3, Azure and
# GCS datastores read (boto3, azure-identity's DefaultAzureCredential, google-auth).
ENV_ALLOWLIST = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_*", "TZ", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV",
    "METAFLOW_*", "AWS_*", "AZURE_*", "GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT",
    "DAGSTER_HOME", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE",
]
ENV_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\*?$")


def _jsonable(value):
    """Decorator attributes as JSON: containers recursively, anything else non-JSON as its str()."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    return str(value)


def _decorator(deco, flow_level=False):
    static = bool(getattr(deco, "statically_defined", True))
    spec = None
    if not flow_level and not static and getattr(deco, "inserted_by", None) is None:
        spec = deco.make_decorator_spec()
    out = {"name": deco.name, "attributes": _jsonable(deco.attributes), "static": static, "spec": spec}
    given = getattr(deco, "_user_defined_attributes", None)
    if given is not None:
        # The attributes the flow set (the others hold Metaflow's defaults): @resources fills in for
        # @kubernetes only where the flow gave @kubernetes no value (core/k8s.c).
        out["user_attributes"] = sorted(given)
    return out


def _param_type(param):
    t = param.kwargs.get("type")
    if isinstance(t, JSONTypeClass):
        return "json"
    if isinstance(t, FilePathClass):
        return "file"
    return {str: "str", int: "int", float: "float", bool: "bool"}.get(t, "str")


def _param_default(flow_name, param):
    """The default of a non-Config Parameter as the IR's `default`: a JSON value of the Parameter's type.

    The default is evaluated as Argo Workflows' `create` evaluates it (`deploy_time_eval`): a function of the
    ParameterContext is called once, with `deploy_time=True`, and Metaflow checks what it returned against
    the Parameter's type (a `type=int` Parameter whose function returns "42" is refused with Metaflow's own
    ParameterFieldTypeMismatch, as on Argo and in `run`); `config_expr` defaults were already resolved by
    `Parameter.init`; an IncludeFile default is uploaded to the datastore and becomes the JSON descriptor text
    its `FilePath` type reads back. `deploy_time_eval` returns a function's value as text ("42", JSON text for
    JSONType): Argo stores that text and lets the task's Click option convert it when the run starts. The
    launchpad field is typed, so the text is converted here, by the Parameter's own Click type, which is the
    conversion `run` and `init` apply to a default: int stays int, a JSONType default becomes its JSON value.
    """
    try:
        value = deploy_time_eval(param.kwargs.get("default"))
    except MetaflowException as e:
        raise DagsterException("flow *%s*: %s" % (flow_name, e.message)) from None
    ptype = param.kwargs.get("type")
    if value is None or isinstance(ptype, FilePathClass):
        return value
    try:
        value = click.types.convert_type(ptype).convert(value, None, None)
    except click.BadParameter as e:
        raise DagsterException(
            "flow *%s*: the default of parameter *%s*, %r, is not a valid %s: %s"
            % (flow_name, param.name, value, _param_type(param), e.message)
        ) from None
    if _param_type(param) == "str" and not isinstance(value, str):
        # Click's STRING passes a non-string default through; every run passes a str-typed value as text.
        value = str(value)
    return value


def _step(node, graph):
    from metaflow.plugins.timeout_decorator import TimeoutDecorator

    user, error, minutes = 0, 0, 2
    timeout, env, resources = 0, {}, {}
    for deco in node.decorators:
        u, e = deco.step_task_retry_count()
        user, error = max(user, u), max(error, e)
        if deco.name == "retry":
            minutes = int(deco.attributes.get("minutes_between_retries", minutes))
        if isinstance(deco, TimeoutDecorator):
            timeout = int(deco.secs)
        if deco.name == "environment":
            env = {str(k): str(v) for k, v in (deco.attributes.get("vars") or {}).items()}
        if deco.name == "resources":
            resources = {k: str(v) for k, v in deco.attributes.items() if v is not None}
    switch = None
    if node.type == "split-switch":
        switch = {"condition": node.condition, "cases": [[str(k), v] for k, v in node.switch_cases.items()]}
    return {
        "name": node.name,
        "type": node.type,
        "file": os.path.abspath(node.source_file) if node.source_file else "",
        "line": int(node.func_lineno or 0),
        "next": list(node.out_funcs),
        "in_funcs": sorted(node.in_funcs),
        "split_parents": list(node.split_parents),
        "matching_join": node.matching_join,
        "foreach_var": node.foreach_param,
        "parallel": bool(node.parallel_foreach),
        "num_parallel": int(node.num_parallel or 0),
        "switch": switch,
        "decorators": [_decorator(d) for d in node.decorators],
        "retries": {"user": user, "error": error, "minutes_between": minutes},
        "timeout_seconds": timeout,
        "env": env,
        "resources": resources,
    }


def _triggers(flow):
    """`@trigger` as the IR's `flow.triggers`: events with their parameter mappings, after deploy-time
    values (callables, `namespaced_event_name`) are resolved, and the decorator's `options`."""
    decos = flow._flow_decorators.get("trigger")
    if not decos:
        return None
    deco = decos[0]
    deco.format_deploytime_value()
    events = [{"name": t["name"], "parameters": dict(t.get("parameters") or {})} for t in deco.triggers]
    return {"events": events, "options": _jsonable(deco.options or {})}


def _trigger_on_finish(flow):
    """`@trigger_on_finish` as the IR's `flow.trigger_on_finish`: the upstream flows after deploy-time values
    are resolved, with project and branch null where the decorator leaves them to this flow's @project
    (the core fills them in and names the events), and the decorator's `options`."""
    decos = flow._flow_decorators.get("trigger_on_finish")
    if not decos:
        return None
    deco = decos[0]
    deco.format_deploytime_value()
    flows = [{"name": t["flow"], "project": t.get("project"), "branch": t.get("branch")} for t in deco.triggers]
    return {"flows": flows, "options": _jsonable(deco.options or {})}


def _schedule(flow):
    """`@schedule` as the IR's `flow.schedule`: Metaflow's own cron (after daily/hourly/weekly/cron
    precedence) and timezone; the core turns it into Dagster's form."""
    decos = flow._flow_decorators.get("schedule")
    if not decos or not getattr(decos[0], "schedule", None):
        return None
    return {"cron": decos[0].schedule, "timezone": decos[0].timezone}


def _config(name, stored):
    """A Config as an IR `configs` entry. Its value is Metaflow's own stored form `[value, plain]` as JSON
    text, what Metaflow's runtime writes to the config file its tasks read (`dump_config_values`): tasks
    then take the value resolved here (default file, `--config`, `--config-value`) and never parse it
    again, which a Config with its own `parser` could not survive. Keys keep their order, as in the file
    Metaflow's runtime writes: a step that iterates a Config sees the order `run` gives it."""
    value, plain = stored
    try:
        text = json.dumps([value, bool(plain)])
    except (TypeError, ValueError) as e:
        raise DagsterException("config *%s*: its value cannot be passed to tasks as JSON (%s)" % (name, e)) from None
    return {"name": name, "value": text}


def _job_name(flow_name):
    """The Dagster job name of the flow: its project_flow_name under @project, else its name, as the C core names
    a job (the core decides every name the definitions use)."""
    from metaflow_dagster import _core

    return _core.job_name(current.get("project_flow_name") or flow_name)


def env_allowlist(forward_env=()):
    """ENV_ALLOWLIST and the names (``NAME`` or prefix ``NAME*``) given to ``--forward-env``, in order, once each."""
    for name in forward_env:
        if not ENV_PATTERN.match(name):
            raise DagsterException(
                "--forward-env %r is not an environment variable name (letters, digits and '_', not starting "
                "with a digit), with an optional trailing '*' for a prefix; give the name, never the value" % name
            )
    return list(dict.fromkeys(ENV_ALLOWLIST + list(forward_env)))


EXECUTORS = ("threads", "multiprocess", "celery", "k8s", "docker")


def executor_options(executor=None, executor_config=None, celery_queues=()):
    """The IR's executor options from `create --executor`, `--executor-config JSON` and `--celery-queue
    STEP=QUEUE`: ``{"executor", "executor_config", "queues"}`` with only what was given. The core decides the
    executor when none is named (k8s for a flow with @kubernetes) and checks the rest against the flow; the
    config's keys are checked against the executor's own schema when the generated file loads."""
    out = {}
    if executor is not None:
        if executor not in EXECUTORS:
            raise DagsterException("--executor %s is not one of %s" % (executor, ", ".join(EXECUTORS)))
        out["executor"] = executor
    if executor_config:
        try:
            config = json.loads(executor_config)
        except ValueError as e:
            raise DagsterException("--executor-config is not JSON (%s): %s" % (e, executor_config)) from None
        if not isinstance(config, dict):
            raise DagsterException("--executor-config must be a JSON object of the executor's config, such as "
                                   '\'{"broker": {"env": "DAGSTER_CELERY_BROKER_URL"}}\' (got %s)' % executor_config)
        out["executor_config"] = config
    queues = {}
    for item in celery_queues:
        step, sep, queue = item.partition("=")
        if not sep or not step or not queue:
            raise DagsterException("--celery-queue %s: give STEP=QUEUE, such as train=gpu" % item)
        if step in queues:
            raise DagsterException("--celery-queue names step *%s* twice" % step)
        queues[step] = queue
    if queues:
        out["queues"] = queues
    return out


def build_ir(obj, tags=(), namespace=None, max_workers=16, workflow_timeout=0, emit_step_events=False,
             forward_env=(), max_num_splits=100, executor=None):
    """The IR of the processed flow in `obj` (the Metaflow CLI state) as a JSON-ready dict; ``executor`` is
    what executor_options returned."""
    from metaflow.flowspec import FlowStateItems
    from metaflow.util import get_username

    flow, graph = obj.flow, obj.graph
    flow_file = os.path.abspath(sys.argv[0])
    with open(flow_file, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    project = None
    if current.get("project_name"):
        project = {
            "name": current.project_name,
            "branch": current.branch_name,
            "flow_name": current.project_flow_name,
            "production": bool(current.is_production),
        }
    params, configs = [], []
    config_values = flow._flow_state[FlowStateItems.CONFIGS]
    for var, param in flow._get_parameters():
        if param.IS_CONFIG_PARAMETER:
            configs.append(_config(param.name, config_values.get(param.name, (None, False))))
            continue
        params.append({
            "name": param.name,
            "var": var,
            "type": _param_type(param),
            "default": _jsonable(_param_default(flow.name, param)),
            "required": bool(param.kwargs.get("required", False)),
            "help": str(param.kwargs.get("help") or ""),
        })
    flow_decos = [_decorator(d, flow_level=True) for decos in flow._flow_decorators.values() for d in decos]
    opts = {}
    for decos in flow._flow_decorators.values():
        for d in decos:
            opts.update(dict(d.get_top_level_options()))
    ds = obj.flow_datastore
    return {
        "ir_version": IR_VERSION,
        "flow": {
            "name": flow.name,
            "file": flow_file,
            "file_sha256": sha,
            "code_package": None,  # set by `create` (package_code)
            "job_name": _job_name(flow.name),
            "start_step": graph.start_step,
            "end_step": graph.end_step,
            "doc": graph.doc or "",
            "project": project,
            "decorators": flow_decos,
            "triggers": _triggers(flow),
            "trigger_on_finish": _trigger_on_finish(flow),
            "schedule": _schedule(flow),
        },
        "steps": [_step(graph[name], graph) for name in graph.sorted_nodes],
        "parameters": params,
        "configs": configs,
        "settings": {
            "datastore": ds.TYPE,
            "datastore_root": os.path.abspath(ds.datastore_root) if ds.TYPE == "local" else ds.datastore_root,
            "metadata": obj.metadata.TYPE,
            "environment": obj.environment.TYPE,
            "event_logger": obj.event_logger.TYPE,
            "monitor": obj.monitor.TYPE,
            "python": sys.executable,
            "username": get_username(),
            "env_allowlist": env_allowlist(forward_env),
        },
        "options": {
            "tags": list(tags),
            "namespace": namespace,
            "max_workers": int(max_workers),
            "workflow_timeout": int(workflow_timeout),
            "with": list(obj.tl_decospecs),
            "branch": opts.get("branch"),
            "production": bool(opts.get("production", False)),
            "emit_step_events": bool(emit_step_events),
            "max_num_splits": int(max_num_splits),
            **(executor or {}),
        },
    }


def compile_ir(ir, *more):
    """Compile `ir` with the C core and return the definitions source, checked with `ast.parse`.

    With `more` IRs the flows share one file, one code location (`create --add-flow`); the core's
    diagnostics then name the flow each is about.
    """
    from metaflow_dagster import _core
    from metaflow_dagster.amalgamate import runtime_source

    runtime_src = runtime_source()  # the runtime's modules as one source, without importing them (or Dagster)
    names = ", ".join("*%s*" % x["flow"]["name"] for x in (ir,) + more)
    try:
        text = _core.compile_many([ir, *more], runtime_src) if more else _core.compile(ir, runtime_src)
    except _core.CompileError as e:
        raise DagsterException(
            "cannot compile flow%s %s for Dagster:\n%s" % ("s" if more else "", names, e)
        ) from None
    try:
        ast.parse(text)
    except SyntaxError as e:
        raise DagsterException(
            "internal error: the generated definitions for %s do not parse (line %s: %s)" % (names, e.lineno, e.msg)
        ) from None
    return text


# ----- the code package ----------------------------------------------------------------------------------
# `create` packages the flow's directory into the Metaflow datastore, as `argo-workflows create` does, and
# the generated file records where (FLOW["code_package"]). Workers download it and run the flow from it, so
# the file runs on any machine with access to the datastore, without the flow source.

CODE_PACKAGE_MODES = ("auto", "always", "never")


def package_code(obj, mode="auto"):
    """Upload the flow's code package to the datastore; returns ``{"url", "sha", "metadata"}`` or None.

    ``auto`` packages when the datastore is not local: a worker elsewhere can read the datastore, not the
    flow file. The package is Metaflow's own (``MetaflowPackage``: the flow's directory filtered by
    ``--package-suffixes``, plus Metaflow's INFO and CONFIG), stored content-addressed, so the same code
    gives the same sha and the same definitions file.
    """
    if mode not in CODE_PACKAGE_MODES:
        raise DagsterException("--code-package must be one of %s (got %r)" % (", ".join(CODE_PACKAGE_MODES), mode))
    if mode == "never" or (mode == "auto" and obj.flow_datastore.TYPE == "local"):
        return None
    from metaflow.package import MetaflowPackage

    package = MetaflowPackage(obj.flow, obj.environment, obj.echo, suffixes=obj.package_suffixes)
    url, sha = obj.flow_datastore.save_data([package.blob], len_hint=1)[0]
    obj.echo("Uploaded the code package of *%s* to %s." % (obj.flow.name, url))
    return {"url": url, "sha": sha, "metadata": package.package_metadata}
