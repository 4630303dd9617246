"""The wall around Dagster's private internals: the executor that runs ops as threads, and everything else
that needs Dagster beyond its public API.

Every private name used here is listed in ``_DAGSTER_INTERNALS`` and checked, once per process, when a job is
defined (``_threaded_executor_problem``); if one is missing the jobs fall back to Dagster's own multiprocess
executor, slower but not broken. No other module of the runtime (or of metaflow-dagster) imports
``dagster._*``. The two changes made to Dagster's objects in a run worker (``_reuse_sqlite_engines``) live here
too, guarded by type and attribute checks.
"""

import functools
import logging
import os
import queue
import sys
import threading
import warnings
from contextlib import ExitStack, contextmanager

from dagster import DagsterExecutionInterruptedError, Executor, Field, Int, executor

from .remote import _EXECUTOR_PACKAGES, _remote_executor, _with_defaults
from .tasks import _KILL_GRACE_SECONDS

EXECUTOR_ENV = "METAFLOW_DAGSTER_EXECUTOR"


# What _OpThreadExecutor uses of Dagster beyond its public API, as (module, name, attributes or
# constructor keywords it relies on). Read from Dagster 1.13; checked when a job is defined.
_DAGSTER_INTERNALS = (
    ("dagster._core.events", "DagsterEvent", ("engine_event", "capture_logs")),
    ("dagster._core.events", "EngineEventData", ("in_process", "interrupted")),
    ("dagster._core.execution.api", "ExecuteRunWithPlanIterable", ()),
    ("dagster._core.execution.context_creation_job", "PlanExecutionContextManager",
     ("job", "retry_mode", "execution_plan", "run_config", "dagster_run", "instance", "raise_on_error",
      "output_capture", "step_dependency_config")),
    ("dagster._core.execution.compute_logs", "create_compute_log_file_key", ()),
    ("dagster._core.execution.plan.active", "ActiveExecution",
     ("retry_mode", "max_concurrent", "instance_concurrency_context", "step_dependency_config",
      "check_for_interrupts", "mark_interrupted", "get_steps_to_execute", "concurrency_event_iterator",
      "sleep_interval", "handle_event", "verify_complete", "plan_events_iterator", "get_known_state",
      "is_complete")),
    ("dagster._core.execution.plan.instance_concurrency_context", "InstanceConcurrencyContext", ()),
    ("dagster._core.execution.plan.execute_plan", "_trigger_hook", ()),
    ("dagster._core.execution.plan.execute_plan", "dagster_event_sequence_for_step", ()),
    ("dagster._core.execution.retries", "RetryMode", ("from_config",)),
    ("dagster._core.execution.retries", "get_retries_config", ()),
    ("dagster._core.storage.compute_log_manager", "CapturedLogContext", ()),
    ("dagster._core.storage.compute_log_manager", "ComputeIOType", ("STDOUT", "STDERR")),
    ("dagster._core.storage.local_compute_log_manager", "LocalComputeLogManager",
     ("open_log_stream", "complete_artifact_path", "capture_logs", "build_log_key_for_run")),
    ("dagster._utils.error", "serializable_error_info_from_exc_info", ()),
    ("dagster._core.executor.base", "Executor", ("step_dependency_config",)),
    ("dagster._core.execution.context.system", "PlanExecutionContext", ("for_step",)),
    ("dagster._core.execution.plan.plan", "ExecutionPlan", ("get_steps_to_execute_in_topo_order",)),
    ("dagster._core.storage.event_log.sqlite.sqlite_event_log", "SqliteEventLogStorage", ("path_for_shard",)),
    ("dagster._core.storage.sql", "ScriptDirectory", ("from_config",)),
    ("dagster._serdes", "deserialize_value", ()),
    ("dagster._utils.schedules", "reverse_cron_string_iterator", ()),
)


@functools.lru_cache(maxsize=None)  # once per process, not once per job of a file of several flows
def _threaded_executor_problem(internals=_DAGSTER_INTERNALS):
    """None if the installed Dagster has every one of ``internals`` (what _OpThreadExecutor uses), else what
    is missing.

    A class's constructor keywords count as its attributes. The result is the same for the whole process.
    """
    import importlib
    import inspect

    for module, name, needs in internals:
        try:
            obj = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            return "Dagster %s has no %s.%s" % (dagster_version(), module, name)
        if not needs:
            continue
        keywords = set()
        if inspect.isclass(obj):
            try:
                keywords = set(inspect.signature(obj).parameters)
            except (TypeError, ValueError):
                pass
        missing = [n for n in needs if n not in keywords and not hasattr(obj, n)]
        if missing:
            return "Dagster %s's %s.%s has no %s" % (dagster_version(), module, name, ", ".join(missing))
    return None


def dagster_version():
    import dagster

    return getattr(dagster, "__version__", "?")


def _multiprocess_executor(max_workers):
    """Dagster's multiprocess executor, at most ``max_workers`` ops at a time unless the launchpad says otherwise."""
    from dagster import multiprocess_executor

    return multiprocess_executor.configured(
        lambda cfg: {"max_concurrent": cfg["max_concurrent"]},
        name="metaflow_multiprocess",
        config_schema={
            "max_concurrent": Field(
                Int, default_value=max_workers,
                description="Ops (Metaflow tasks) running at the same time (Metaflow's --max-workers).",
            )
        },
    )


# .launcher: the _Launcher of the run whose op this thread executes; .streams: the op's captured stdout/stderr
_OP_THREAD = threading.local()
_INTERRUPTS = (KeyboardInterrupt, DagsterExecutionInterruptedError)


def _reuse_sqlite_engines(instance):
    """Make the run worker's SQLite event log reuse what Dagster rebuilds for every event (run worker only).

    Dagster's ``SqliteEventLogStorage`` creates a SQLAlchemy engine for every event it stores, so every
    INSERT is compiled again (its compiled-statement cache belongs to the engine), and Alembic re-reads
    its ~40 migration scripts at every schema check and stamp (three when a run's database is created).
    Writes of events are what serializes a run's ops: this cuts a write from ~2.5 to ~1.5 ms. Here:

    * one engine per shard, kept for the process. The pool is still NullPool (a new SQLite connection per
      write, under the storage's own lock), so what reaches the database is unchanged;
    * Alembic's ScriptDirectory read once per script location (the migration scripts of an installed
      Dagster do not change while a run executes).

    Only the exact class is changed, and only where it has what is replaced: anything else (Postgres, a
    subclass, another Dagster) is left as it is. Returns whether it changed anything.
    """
    # SQLAlchemy and Alembic are reached through Dagster's own modules: the file imports only Dagster.
    from dagster._core.storage import sql
    from dagster._core.storage.event_log.sqlite import sqlite_event_log as sqlite_log

    storage = instance.event_log_storage
    needs = ("_db_lock", "_initialized_dbs", "_initdb", "conn_string_for_shard", "_connect")
    if (
        type(storage) is not sqlite_log.SqliteEventLogStorage
        or not all(hasattr(storage, n) for n in needs)
        or not all(hasattr(sqlite_log, n) for n in ("create_engine", "NullPool", "SQLITE_BUSY_TIMEOUT_SECONDS"))
        or not hasattr(getattr(sql, "ScriptDirectory", None), "from_config")
    ):
        return False
    create_engine, NullPool, ScriptDirectory = sqlite_log.create_engine, sqlite_log.NullPool, sql.ScriptDirectory
    engines = {}

    @contextmanager
    def connect(shard):  # SqliteEventLogStorage._connect, with the shard's engine kept
        with storage._db_lock:
            engine = engines.get(shard)
            if engine is None:
                engine = engines[shard] = create_engine(
                    storage.conn_string_for_shard(shard), poolclass=NullPool,
                    connect_args={"timeout": sqlite_log.SQLITE_BUSY_TIMEOUT_SECONDS},
                )
            if shard not in storage._initialized_dbs:
                storage._initdb(engine)
                storage._initialized_dbs.add(shard)
            with engine.connect() as conn:
                with conn.begin():
                    yield conn

    storage._connect = connect
    _cache_migration_scripts(ScriptDirectory)
    return True


@contextmanager
def _run_database_held_open(instance, run_id):
    """Keep one idle SQLite connection to the run's own event-log database open while its ops run (run worker,
    Dagster's default SQLite storage only; anything else is left alone).

    Dagster's SQLite event log opens a connection for every event it stores and closes it after the commit
    (NullPool). The database is in WAL mode, and SQLite makes the last connection to close a WAL database
    checkpoint the log into the database file and delete it: so every event of a run paid for a checkpoint
    and for setting the WAL up again, under the lock that serializes a run's events. While another
    connection is open no close is the last one, and the WAL is checkpointed as SQLite does for any database
    in use, every 1000 pages, and once more when this connection closes at the end. What is written and
    when it is durable do not change: each event is still its own transaction, committed as before. This
    connection never writes and holds no transaction (its one read ends before it is kept). Measured on
    this machine: a write ~1.4-2.2 ms -> ~0.7-0.9 ms of wall time, ~0.7 -> ~0.3 ms of CPU.
    """
    import sqlite3

    from dagster._core.storage.event_log.sqlite import sqlite_event_log as sqlite_log

    storage, held = instance.event_log_storage, None
    if type(storage) is sqlite_log.SqliteEventLogStorage and hasattr(storage, "path_for_shard"):
        path = storage.path_for_shard(run_id)
        if os.path.exists(path):  # created with RUN_START; never create it here
            try:
                held = sqlite3.connect(path, timeout=getattr(sqlite_log, "SQLITE_BUSY_TIMEOUT_SECONDS", 30),
                                       check_same_thread=False)
                held.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the WAL index, then idles
            except sqlite3.Error:
                if held is not None:
                    held.close()
                held = None
    try:
        yield held
    finally:
        if held is not None:
            held.close()


def _cache_migration_scripts(script_directory):
    """Make Alembic's ``ScriptDirectory.from_config`` read each script location once per process (the migration
    scripts of an installed Dagster do not change while a run executes). Done at most once."""
    if getattr(script_directory.from_config, "_mfd_cached", False):
        return
    read, scripts = script_directory.from_config, {}

    def from_config(config):
        key = (config.get_main_option("script_location"), config.get_main_option("version_locations"))
        if key not in scripts:
            scripts[key] = read(config)
        return scripts[key]

    from_config._mfd_cached = True
    script_directory.from_config = from_config


def _executes_job_here(job, argv=None):
    """Whether this process was started to execute a run of ``job``: ``dagster job execute`` (with ``-j job``,
    or no ``-j``: the file's only job) or a run worker of Dagster's run launchers (``dagster api execute_run``
    or ``resume_run``, whose argument names the job). Only such a process forks the zygote when the file
    loads (FlowRuntime.executor); webservers, daemons and code servers never do.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:2] == ["job", "execute"]:
        named = [b for a, b in zip(args, args[1:]) if a in ("-j", "--job")]
        named += [a.split("=", 1)[1] for a in args if a.startswith("--job=")]
        return not named or named == [job]
    if args[:2] in (["api", "execute_run"], ["api", "resume_run"]) and len(args) > 2:
        try:
            from dagster._serdes import deserialize_value

            return deserialize_value(args[2]).job_origin.job_name == job
        except Exception:  # another Dagster's arguments: fork when the executor is made, as elsewhere
            return False
    return False


class _Launcher:
    """What the op threads of one run share: the zygote (None when tasks must not fork) and a pipe that
    becomes readable when the run is interrupted, which ``_spawn`` watches beside the task's output."""

    def __init__(self, zygote):
        self.zygote = zygote
        self.cancel_fd, self._cancel_w = os.pipe()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def cancelled(self):
        return self._cancel_w is None

    def cancel(self):
        if self._cancel_w is not None:
            os.write(self._cancel_w, b"x")
            os.close(self._cancel_w)
            self._cancel_w = None

    def close(self):
        self.cancel()
        os.close(self.cancel_fd)
        if self.zygote is not None:
            self.zygote.close()


class _StepLogs:
    """The captured stdout/stderr of a run's ops, the UI's logs of each step.

    With Dagster's local compute log manager (the default) each launch of an op gets files of its own, as a
    step process of Dagster's multiprocess executor does, announced by a LOGS_CAPTURED event naming that
    step; the op's tasks write their lines there (_TaskOutput). Any other manager captures as Dagster's
    in-process executor does, one capture for the whole run: it redirects the process's descriptors (which
    op threads share), so task lines go to this process's stdout/stderr for it to catch.
    """

    def __init__(self, job_context, stack):
        from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager

        self._context = job_context
        self._manager = job_context.instance.compute_log_manager
        self.per_step = type(self._manager) is LocalComputeLogManager
        self._stack = stack
        self._open = {}  # launch -> ExitStack of its streams

    def _key(self):
        from dagster._core.execution.compute_logs import create_compute_log_file_key

        return self._manager.build_log_key_for_run(self._context.run_id, create_compute_log_file_key())

    def for_run(self, step_keys):
        """Events announcing the whole-run capture (managers other than the local one)."""
        from dagster._core.events import DagsterEvent

        if self.per_step:
            return
        log_key = self._key()
        log_context = self._stack.enter_context(self._manager.capture_logs(log_key))
        yield DagsterEvent.capture_logs(self._context, step_keys, log_key, log_context)

    def open(self, launch):
        """(LOGS_CAPTURED event, streams) of a launch of an op; (None, None) without per-step capture."""
        from dagster._core.events import DagsterEvent
        from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType

        if not self.per_step:
            return None, None
        log_key = self._key()
        stack = ExitStack()
        streams = {name: stack.enter_context(self._manager.open_log_stream(log_key, io))
                   for name, io in (("stdout", ComputeIOType.STDOUT), ("stderr", ComputeIOType.STDERR))}
        path = self._manager.complete_artifact_path(log_key)
        stack.callback(lambda: open(path, "a").close())  # as capture_logs does: readers know it is complete
        self._open[launch] = stack
        return DagsterEvent.capture_logs(self._context, [launch[0]], log_key, CapturedLogContext(log_key)), streams

    def close(self, launch):
        stack = self._open.pop(launch, None)
        if stack is not None:
            stack.close()

    def close_all(self):
        for launch in list(self._open):
            self.close(launch)


class _OpThreadExecutor(Executor):
    """Executes the ops of a plan as threads of the run worker, at most ``max_concurrent`` at a time.

    Dagster's multiprocess executor starts a process per op, which loads the code location, the instance
    and Dagster again (about a second of CPU each); an op of ours only waits for its Metaflow task, which
    runs in a process of its own anyway. So ops run as threads here, with Dagster's own per-step machinery
    (``dagster_event_sequence_for_step``: inputs, outputs, retries, failures, hooks), while this thread
    runs the plan with ActiveExecution and yields the events. Each task is still a child process (forked by
    the zygote, or a subprocess when it needs another interpreter), so a crashing task never takes down its
    siblings or the run worker, and a timeout still kills its process group. An interrupt (run termination)
    makes every op kill its task and fail as interrupted.
    """

    def __init__(self, runtime, retries, max_concurrent, zygote=None):
        self._runtime = runtime
        self._retries = retries
        self._max_concurrent = max_concurrent
        self._zygote = zygote  # forked when the executor was made, or None: _run_plan forks it
        self._launches = 0

    @property
    def retries(self):
        return self._retries

    def execute(self, plan_context, execution_plan):
        from dagster._core.events import DagsterEvent, EngineEventData
        from dagster._core.execution.api import ExecuteRunWithPlanIterable
        from dagster._core.execution.context_creation_job import PlanExecutionContextManager

        yield DagsterEvent.engine_event(
            plan_context,
            "Executing steps as threads of process %d, at most %d at a time"
            % (os.getpid(), self._max_concurrent),
            event_specific_data=EngineEventData.in_process(os.getpid(), execution_plan.step_keys_to_execute),
        )
        yield from ExecuteRunWithPlanIterable(
            execution_plan=plan_context.execution_plan,
            iterator=self._run_plan,
            execution_context_manager=PlanExecutionContextManager(
                job=plan_context.job,
                retry_mode=plan_context.retry_mode,
                execution_plan=plan_context.execution_plan,
                run_config=plan_context.run_config,
                dagster_run=plan_context.dagster_run,
                instance=plan_context.instance,
                raise_on_error=plan_context.raise_on_error,
                output_capture=plan_context.output_capture,
                step_dependency_config=self.step_dependency_config,
            ),
        )

    def _run_plan(self, job_context, execution_plan):
        from dagster._core.execution.plan.active import ActiveExecution
        from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext

        if job_context.instance.python_log_level is None and job_context.log.level == logging.NOTSET:
            # Every log record is a write to the run's event log, and those writes are what serializes the
            # ops of a run. Dagster's IO manager logs two DEBUG lines per token it stores or loads (80 of
            # the 300 records of a 20-way foreach); unless the instance sets a python_log_level, ops of
            # these jobs log from INFO up. Dagster's own events are recorded whatever the level.
            job_context.log.setLevel(logging.INFO)
        with ExitStack() as stack:
            stack.enter_context(_run_database_held_open(job_context.instance, job_context.run_id))
            logs = _StepLogs(job_context, stack)
            stack.callback(logs.close_all)
            yield from self._capture_run_logs(job_context, logs, execution_plan)
            concurrency = stack.enter_context(InstanceConcurrencyContext(job_context.instance, job_context.dagster_run))
            active = stack.enter_context(
                ActiveExecution(
                    execution_plan,
                    retry_mode=job_context.retry_mode,
                    max_concurrent=self._max_concurrent,
                    instance_concurrency_context=concurrency,
                    step_dependency_config=job_context.step_dependency_config,
                )
            )
            # Forked while this is the only thread of the process: before any op thread starts.
            zygote, self._zygote = self._zygote, None
            launcher = stack.enter_context(self._runtime._launcher(zygote))
            yield from self._drive(job_context, active, launcher, logs)

    @staticmethod
    def _capture_run_logs(job_context, logs, execution_plan):
        """The whole-run log capture when ops cannot have their own (_StepLogs), reported as Dagster does."""
        from dagster._core.events import DagsterEvent, EngineEventData
        from dagster._utils.error import serializable_error_info_from_exc_info

        try:
            yield from logs.for_run([s.key for s in execution_plan.get_steps_to_execute_in_topo_order()])
        except Exception:
            yield DagsterEvent.engine_event(
                job_context,
                "Exception while setting up compute log capture",
                EngineEventData(error=serializable_error_info_from_exc_info(sys.exc_info())),
            )

    def _drive(self, job_context, active, launcher, logs):
        """Launch each step that is ready in a thread of its own (_op_thread) and yield the events the threads
        queue, until the plan is complete or the run is interrupted."""
        from dagster._core.events import DagsterEvent, EngineEventData

        events = queue.Queue()
        # Keyed by launch, not by step: a step up for retry is launched again while the thread of its
        # failed attempt may still be finishing.
        threads, errors, stopping = {}, [], False
        try:
            while (not stopping and not active.is_complete) or threads:
                if not stopping and active.check_for_interrupts():
                    stopping = True
                    active.mark_interrupted()
                    launcher.cancel()
                    yield DagsterEvent.engine_event(
                        job_context,
                        "Interrupted: stopping the Metaflow tasks of %d running ops" % len(threads),
                        EngineEventData.interrupted([key for key, _ in threads]),
                    )
                if not stopping:
                    for step in active.get_steps_to_execute(limit=self._max_concurrent - len(threads)):
                        yield from self._launch(job_context, active, step, launcher, logs, events, threads)
                    yield from active.concurrency_event_iterator(job_context)
                wait = 0.5 if threads else min(max(active.sleep_interval(), 0.01), 0.5)
                try:
                    launch, event, error = events.get(timeout=wait)
                except queue.Empty:
                    continue
                if event is None:  # the op's thread has finished
                    threads.pop(launch).join()
                    logs.close(launch)
                    if error is not None and not isinstance(error, _INTERRUPTS):
                        errors.append(error)
                    if all(key != launch[0] for key, _ in threads):  # not relaunched for a retry
                        active.verify_complete(job_context, launch[0])
                else:
                    yield event
                    active.handle_event(event)
                yield from active.plan_events_iterator(job_context)
        finally:
            if threads:  # leaving early (an exception, or the caller closed us): stop every task
                launcher.cancel()
                for thread in threads.values():
                    thread.join(_KILL_GRACE_SECONDS * 2)
        if stopping:
            raise DagsterExecutionInterruptedError()
        if errors:
            raise errors[0]

    def _launch(self, job_context, active, step, launcher, logs, events, threads):
        """Start the thread of one launch of ``step``, with the logs of its own it writes to (_StepLogs)."""
        self._launches += 1
        launch = (step.key, self._launches)
        captured, streams = logs.open(launch)
        if captured is not None:
            yield captured
        step_context = job_context.for_step(step, active.get_known_state())
        thread = threading.Thread(target=_op_thread, args=(launch, step_context, launcher, streams, events),
                                  name="op %s" % step.key, daemon=True)
        threads[launch] = thread
        thread.start()


def _op_thread(launch, step_context, launcher, streams, events):
    """Body of an op's thread: Dagster's event sequence of the step, then its hooks, queued for the executor.

    ``dagster_event_sequence_for_step`` turns every error of the op into a failure (or retry) event and
    raises only interrupts (and any error when the run asks to raise them); the last item queued for the
    step is ``(launch, None, that exception or None)``. What the op's tasks print goes to ``streams``.
    """
    from dagster._core.execution.plan.execute_plan import _trigger_hook, dagster_event_sequence_for_step

    _OP_THREAD.launcher, _OP_THREAD.streams = launcher, streams
    error = None
    try:
        step_events = []
        for event in dagster_event_sequence_for_step(step_context):
            step_events.append(event)
            events.put((launch, event, None))
        for event in _trigger_hook(step_context, step_events):
            events.put((launch, event, None))
    except BaseException as e:
        error = e
    finally:
        _OP_THREAD.launcher = _OP_THREAD.streams = None
        events.put((launch, None, error))


def make_executor(runtime):
    """The executor of the job of ``runtime`` (a FlowRuntime), as FLOW["executor"] says (the core decides it from
    ``create --executor`` and @kubernetes): by default ops run as threads of the run worker (_OpThreadExecutor), at
    most ``max_workers`` at a time, and the launchpad may change ``max_concurrent`` and ``retries``;
    ``multiprocess`` is Dagster's own; ``celery``, ``k8s`` and ``docker`` are Dagster's executors from
    dagster-celery, dagster-k8s and dagster-docker (_remote_executor), imported only for such a job.

    _OpThreadExecutor drives Dagster internals (see _threaded_executor_problem). On a Dagster without
    them, or with METAFLOW_DAGSTER_EXECUTOR=multiprocess in the process loading the file, the threaded jobs use
    Dagster's own multiprocess executor instead: the same runs, each op in a process of its own (slower).
    """
    spec = runtime.flow.get("executor") or {"kind": "threads", "config": {}}
    if spec["kind"] in _EXECUTOR_PACKAGES:
        return _remote_executor(runtime, spec)
    if spec["kind"] == "multiprocess":  # Dagster's own, with create's config (--max-workers its max_concurrent)
        from dagster import multiprocess_executor

        defaults = dict({"max_concurrent": runtime.flow["options"]["max_workers"]}, **(spec.get("config") or {}))
        return _with_defaults(multiprocess_executor, defaults, "metaflow_multiprocess", runtime.flow["name"])
    problem = _threaded_executor_problem()
    if problem is not None or os.environ.get(EXECUTOR_ENV) == "multiprocess":
        if problem is not None:
            warnings.warn("metaflow-dagster: %s; jobs of flow %s run with Dagster's multiprocess executor"
                          % (problem, runtime.flow["name"]), stacklevel=2)
        return _multiprocess_executor(runtime.flow["options"]["max_workers"])
    from dagster._core.execution.retries import RetryMode, get_retries_config

    # In a process started to run this job, the zygote is forked now, as the file loads: it imports
    # Metaflow (~0.1 s) while Dagster creates the run and its plan and stores RUN_START, rather than
    # from the executor's creation on, which left the first task waiting for it.
    early = []
    if threading.active_count() == 1 and _executes_job_here(runtime.flow["job_name"]):
        early.append(runtime._zygote())

    @executor(
        name="metaflow_threads",
        config_schema={
            "max_concurrent": Field(
                Int,
                default_value=runtime.flow["options"]["max_workers"],
                description="Ops (Metaflow tasks) running at the same time (Metaflow's --max-workers).",
            ),
            "retries": get_retries_config(),
        },
    )
    def metaflow_threads(init_context):
        cfg = init_context.executor_config
        # The executor is made before the run starts (RUN_START, the run's event log): if this process
        # runs one thread now, the zygote is forked here and imports Metaflow while Dagster does that.
        if early:  # forked when the file loaded; one run per process
            zygote = early.pop()
        else:
            zygote = runtime._zygote() if threading.active_count() == 1 else None
        _reuse_sqlite_engines(init_context.instance)
        return _OpThreadExecutor(
            runtime, RetryMode.from_config(cfg["retries"]), max(1, cfg["max_concurrent"]), zygote
        )

    return metaflow_threads


def previous_cron_tick(now, cron, timezone):
    """The latest tick of ``cron`` (Dagster's 5-field form) in ``timezone`` at or before ``now`` (epoch seconds),
    as epoch seconds: the boundary of ``@trigger(options={"reset_at": ...})``. Dagster has no public API for
    it; its schedule iterator is one of _DAGSTER_INTERNALS."""
    from dagster._utils.schedules import reverse_cron_string_iterator

    return next(reverse_cron_string_iterator(now, cron, timezone)).timestamp()
