"""Dagster's executors from other packages: Celery workers, Kubernetes Jobs and Docker containers, for jobs whose
ops run where the run worker's disk is not (FLOW["executor"], as the core decided it from ``create --executor``
and @kubernetes). Public Dagster API only; the module of each executor is imported when a job asks for it.
"""

import json
import os

import dagster
from dagster import DagsterInvalidConfigError, Field

from .tasks import _env_allowed

# The executors of other packages a job can ask for (FLOW["executor"]["kind"], decided by the core): the module,
# the executor's name in it, and the pip requirement that brings it (versioned with Dagster: 0.N pairs with 1.M).
_EXECUTOR_PACKAGES = {
    "celery": ("dagster_celery", "celery_executor", "dagster-celery"),
    "k8s": ("dagster_k8s", "k8s_job_executor", "dagster-k8s"),
    "docker": ("dagster_docker", "docker_executor", "dagster-docker"),
}

# Variable names that hold credentials: never copied from the run worker's environment into the spec of a
# Kubernetes Job or a container (where anyone who reads the spec reads them); they reach steps from the
# cluster's own secrets (@kubernetes(secrets=[...]), the executor's env_secrets) or its service account.
_CREDENTIAL_WORDS = ("SECRET", "TOKEN", "PASSWORD", "PASSWD", "CREDENTIAL", "HEADERS", "PRIVATE", "ACCESS_KEY",
                     "API_KEY", "SESSION")


class ExecutorUnavailableError(Exception):
    """The job asks for an executor whose package is not installed where the definitions load."""


def _optional_executor(kind, flow_name):
    """The executor definition of ``kind`` from its package, imported only now; ExecutorUnavailableError, which
    says what to install, when the package is missing."""
    import importlib

    module, name, requirement = _EXECUTOR_PACKAGES[kind]
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError as e:
        major, minor = (getattr(dagster, "__version__", "?").split(".") + ["0", "0"])[:2]
        pin = "%s>=0.%d,<0.%d" % (requirement, int(minor) + 16, int(minor) + 17) if major == "1" else requirement
        raise ExecutorUnavailableError(
            "the job of flow %s runs on Dagster's %s executor (create --executor %s), which needs %s where the "
            "definitions load: pip install '%s' (%s)" % (flow_name, kind, kind, requirement, pin, e)
        ) from None


def _forwarded_env(allowlist):
    """Names of this process's variables a step's container gets (k8s, docker): those FLOW["executor"] lists
    (the allowlist without what only means something on this machine), never a credential (_CREDENTIAL_WORDS).
    Only the names go into the executor's config; Dagster reads each value from this process (the run worker)."""
    return sorted(name for name in os.environ
                  if _env_allowed(name, allowlist) and not any(w in name.upper() for w in _CREDENTIAL_WORDS))


def _with_defaults(executor_def, defaults, name, flow_name, extra=None):
    """``executor_def`` with the config schema the launchpad shows: its own fields, those in ``defaults``
    (``create --executor-config``) defaulting to the given values. ``extra(config)`` adds what only the run worker
    knows. A key the executor does not take is refused when the file loads, so `create` refuses it too."""
    fields = dict(executor_def.config_schema.config_type.fields)
    unknown = sorted(set(defaults) - set(fields))
    if unknown:
        raise ValueError("create --executor-config of flow %s: the %s executor has no config %s (it takes %s)"
                         % (flow_name, name, ", ".join(unknown), ", ".join(sorted(fields))))
    schema = {}
    for key, field in fields.items():
        if key in defaults:
            try:
                field = Field(field.config_type, default_value=defaults[key], is_required=False,
                              description=field.description)
            except DagsterInvalidConfigError as e:
                raise ValueError("create --executor-config %s: %s is not a valid %s of the %s executor of flow %s (%s)"
                                 % (key, json.dumps(defaults[key]), key, name, flow_name,
                                    "; ".join(x.message for x in e.errors) or e)) from None
        schema[key] = field
    return executor_def.configured(lambda cfg: extra(dict(cfg)) if extra else dict(cfg), name=name,
                                   config_schema=schema)


def _remote_executor(runtime, spec):
    """The executor of a job whose ops share no disk with the run worker (FLOW["executor"]): Celery workers,
    Kubernetes Jobs or Docker containers, configured with ``create --executor-config`` as launchpad defaults. A
    step's container (k8s, docker) gets the run worker's variables that FLOW["executor"]["forward_env"] lists,
    by name (_forwarded_env)."""
    kind, flow_name = spec["kind"], runtime.flow["name"]
    base = _optional_executor(kind, flow_name)
    extra = None
    if "forward_env" in spec:
        def extra(cfg, allowlist=tuple(spec["forward_env"])):
            given = list(cfg.get("env_vars") or [])
            names = {v.split("=", 1)[0] for v in given}
            cfg["env_vars"] = given + [n for n in _forwarded_env(allowlist) if n not in names]
            return cfg
    return _with_defaults(base, spec.get("config") or {}, "metaflow_%s" % kind, flow_name, extra)
