"""The runtime every generated definitions file embeds, in modules with one job each.

============  ====================================================================================
contract      names, ids and values every part agrees on (tags, run and task ids, tokens, the Parameter
              value converter, events); needs only the standard library
output        what a task prints (to Dagster, to Metaflow's logs) and why it failed
tasks         the Metaflow task process: how it starts, what it reports back
zygote        the single-threaded process that forks a run's tasks
remote        Dagster's executors from other packages (celery, k8s, docker), with create's defaults
executor      the wall around Dagster's private internals: ops as threads of the run worker; the job's
              executor (threads, multiprocess, or one of remote's)
package       the code package a flow's tasks run from; the stale-file check
tokens        the op outputs of jobs whose ops share no disk, in the Metaflow datastore
commands      a task's command line and environment
processes     running a task's process from an op
sensors       @trigger and @trigger_on_finish sensors; publishing events
flow          FlowRuntime: the ops of a generated job
============  ====================================================================================

Each is an ordinary module, linted and tested on its own; ``metaflow_dagster.amalgamate`` pastes them, in this
order, into the one source a definitions file embeds (as SQLite builds ``sqlite3.c``). This package imports a
module only when one of its names is asked for, so ``metaflow_dagster.runtime.contract`` loads without Dagster.
"""

import importlib

from metaflow_dagster.amalgamate import MODULES

# The public names, by module: `from metaflow_dagster.runtime import FlowRuntime` imports .flow (and Dagster).
_PUBLIC = {
    "contract": ("RUN_ID_TAG", "ROOT_RUN_ID_TAG", "DEPLOYMENT_TAG", "JOB_FLOW_TAG", "TRIGGER_ENV", "PARAMETERS_ENV",
                 "ORIGIN_RUN_TAG", "RESUME_STEP_TAG", "PARAMS_TASK_ID", "CODE_CACHE_ENV", "TRIGGERS_TAG",
                 "EVENT_ASSET_PREFIX", "SIGNATURE_FIELD", "MAX_PAYLOAD_BYTES", "StaleDefinitionsError", "BadEvent",
                 "task_id_for", "metaflow_run_id", "mapping_key", "flatten_tokens", "param_env_value",
                 "coerce_param", "event_asset_key", "event_signature", "emitted_events", "emitted_payload"),
    "remote": ("ExecutorUnavailableError",),
    "executor": ("EXECUTOR_ENV", "dagster_version", "make_executor"),
    "tokens": ("TokenStore", "token_io_manager"),
    "sensors": ("EventSensorLogic", "read_event", "event_assets", "publish_event"),
    "flow": ("FlowRuntime",),
}
_WHERE = {name: module for module, names in _PUBLIC.items() for name in names}

__all__ = sorted(_WHERE) + list(MODULES)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module("%s.%s" % (__name__, _WHERE[name])), name)
    if name in MODULES:
        return importlib.import_module("%s.%s" % (__name__, name))
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
