"""Unit tests of metaflow_dagster.runtime, the module every generated file embeds."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest
from dagster import Failure, build_op_context

from metaflow_dagster.runtime import (
    FlowRuntime,
    StaleDefinitionsError,
    executor,
    flatten_tokens,
    mapping_key,
    param_env_value,
    processes,
    task_id_for,
    tasks,
)
from metaflow_dagster.runtime import zygote as zygote_module
from tests.helpers import compiled_literal, doc_ir


def make_flow(tmp_path, **over):
    src = tmp_path / "flow.py"
    src.write_text("print('hello')\n")
    flow = {
        "name": "F",
        "file": str(src),
        "file_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "job_name": "F",
        "start_step": "start",
        "end_step": "end",
        "parameters": [],
        "configs": [],
        "settings": {
            "datastore": "local",
            "datastore_root": str(tmp_path / ".metaflow"),
            "metadata": "local",
            "environment": "local",
            "event_logger": "nullSidecarLogger",
            "monitor": "nullSidecarMonitor",
            "python": sys.executable,
            "username": "alice",
            "env_allowlist": ["PATH", "METAFLOW_*"],
        },
        "options": {
            "tags": [],
            "namespace": None,
            "max_workers": 4,
            "workflow_timeout": 0,
            "with": [],
            "branch": None,
            "production": False,
            "emit_step_events": False,
        },
        "steps": {"start": {"type": "linear", "in": [], "foreach_join": False, "user_retries": 0, "timeout": 0, "env": {"A": "1"}}},
    }
    flow.update(over)
    return flow


def test_task_ids_are_never_integers():
    assert task_id_for([]) == "t"
    assert task_id_for([3, 1]) == "t-3-1"
    assert task_id_for([2], iteration=4) == "t-2-r4"
    for idx in ([], [0], [10, 2]):
        assert not task_id_for(idx).isdigit()


def test_mapping_keys_are_valid_dagster_keys():
    assert mapping_key([]) == "top"
    assert mapping_key([3, 12]) == "3_12"


def test_flatten_tokens_accepts_tokens_lists_and_bundles():
    a, b, c = {"step": "a"}, {"step": "b"}, {"step": "c"}
    assert flatten_tokens([a, [b, [c]], None]) == [a, b, c]
    with pytest.raises(TypeError):
        flatten_tokens([42])


def test_param_env_values_parse_back_with_metaflow_types():
    assert param_env_value("bool", True) == "true"
    assert param_env_value("bool", False) == "false"
    assert param_env_value("int", 5) == "5"
    assert param_env_value("float", 0.25) == "0.25"
    assert param_env_value("json", {"a": [1]}) == '{"a": [1]}'
    assert param_env_value("json", '{"a": 1}') == '{"a": 1}'
    assert param_env_value("str", "x y; $(rm -rf /)") == "x y; $(rm -rf /)"


def test_stale_definitions_are_refused(tmp_path):
    flow = make_flow(tmp_path)
    FlowRuntime(flow)
    with open(flow["file"], "a") as f:
        f.write("# edited\n")
    with pytest.raises(StaleDefinitionsError, match="definitions are stale"):
        FlowRuntime(flow)
    os.unlink(flow["file"])
    with pytest.raises(StaleDefinitionsError, match="cannot be read"):
        FlowRuntime(flow)


def test_task_environment_is_allowlisted(tmp_path, monkeypatch):
    monkeypatch.setenv("METAFLOW_PROFILE", "p")
    monkeypatch.setenv("SECRET_TOKEN", "hunter2")
    rt = FlowRuntime(make_flow(tmp_path))
    env = rt._env("start")
    assert env["METAFLOW_PROFILE"] == "p"
    assert "SECRET_TOKEN" not in env
    assert env["A"] == "1"
    assert env["METAFLOW_USER"] == "alice"
    assert env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] == str(tmp_path)


def compiled_flow(tmp_path, parameters):
    """make_flow's FLOW with ``parameters`` and the config schema the core writes for them."""
    ir = doc_ir()
    ir["parameters"] = parameters
    literal = compiled_literal(ir)
    return make_flow(tmp_path, parameters=literal["parameters"], config_schema=literal["config_schema"])


def test_param_schema_has_types_defaults_and_help(tmp_path):
    params = [
        {"name": "alpha", "var": "alpha", "type": "float", "default": 0.5, "required": False, "help": "a float"},
        {"name": "my-name", "var": "my_name", "type": "str", "default": None, "required": True, "help": ""},
        {"name": "cfg", "var": "cfg", "type": "json", "default": {"k": 1, "s": "caf\u00e9\n", "f": [1e16, 0.1]},
         "required": False, "help": ""},
        {"name": "word", "var": "word", "type": "json", "default": "hi", "required": False, "help": ""},
        {"name": "n", "var": "n", "type": "int", "default": None, "required": False, "help": "how many"},
        {"name": "flag", "var": "flag", "type": "bool", "default": True, "required": False, "help": ""},
    ]
    # The core decides the schema (FLOW["config_schema"]); the runtime only makes the Fields.
    schema = FlowRuntime(compiled_flow(tmp_path, params)).param_schema()
    assert schema["alpha"].default_value == 0.5 and schema["alpha"].description == "a float"
    assert schema["my-name"].is_required and schema["my-name"].description is None
    # The IR holds a JSON Parameter's value; the launchpad field takes its JSON text, a JSON string too, written
    # as json.dumps writes it.
    assert schema["cfg"].default_value == json.dumps(params[2]["default"])
    assert schema["word"].default_value == '"hi"'
    assert not schema["n"].is_required and not schema["n"].default_provided
    assert schema["flag"].default_value is True
    assert [f.config_type.given_name for f in schema.values()] == ["Float", "String", "String", "String", "Int",
                                                                   "Bool"]


def test_spawn_streams_output_and_reports_failure(tmp_path):
    rt = FlowRuntime(make_flow(tmp_path))
    ctx = build_op_context()
    rt._spawn(ctx, [sys.executable, "-c", "print('out line'); import sys; print('err line', file=sys.stderr)"], dict(os.environ), 0, "probe")
    with pytest.raises(Failure, match="probe failed with exit code 3"):
        rt._spawn(ctx, [sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], dict(os.environ), 0, "probe")


def test_spawn_kills_the_process_group_on_timeout(tmp_path):
    rt = FlowRuntime(make_flow(tmp_path))
    marker = tmp_path / "child.pid"
    code = (
        "import subprocess, sys, time\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "open(%r, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n" % str(marker)
    )
    with pytest.raises(Failure, match="timed out after 1 seconds"):
        rt._spawn(build_op_context(), [sys.executable, "-c", code], dict(os.environ), 1, "sleeper")
    grandchild = int(marker.read_text())
    # The grandchild was in the same process group and must be gone too.
    for _ in range(50):
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        subprocess.run(["sleep", "0.1"])
    else:
        pytest.fail("grandchild %d survived the timeout" % grandchild)


def test_runtime_imports_without_the_compiler():
    code = (
        "import sys; sys.modules['metaflow_dagster._core'] = None\n"
        "import metaflow_dagster.runtime as r; print(r.FlowRuntime.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "FlowRuntime"


def test_runtime_imports_only_dagster_metaflow_and_stdlib():
    import ast

    from metaflow_dagster.amalgamate import runtime_source

    tree = ast.parse(runtime_source())  # what a generated file embeds
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) - {"__main__"} <= {"dagster", "metaflow"}


def test_forked_task_runs_the_file_as_main_and_streams_output(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import os, sys\n"
        "print('argv', sys.argv[1:], 'env', os.environ.get('ONLY'), 'other', os.environ.get('HOME'))\n"
        "print('to stderr', file=sys.stderr)\n"
        "assert __name__ == '__main__'\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    rt = FlowRuntime(make_flow(tmp_path))
    ctx = build_op_context()
    rt._spawn(ctx, [sys.executable, str(script), "0"], {"ONLY": "yes"}, 0, "forked", fork=True)
    with pytest.raises(Failure, match="forked failed with exit code 7"):
        rt._spawn(ctx, [sys.executable, str(script), "7"], {"ONLY": "yes"}, 0, "forked", fork=True)
    proc = tasks._ForkedTask([str(script), "0"], {"ONLY": "x"}, str(tmp_path))
    out = proc.stdout.read().decode()
    assert proc.wait() == 0
    assert out.strip() == "argv ['0'] env x other None"


def test_forked_task_is_killed_on_timeout(tmp_path):
    script = tmp_path / "sleep.py"
    script.write_text("import time\ntime.sleep(60)\n")
    rt = FlowRuntime(make_flow(tmp_path))
    with pytest.raises(Failure, match="timed out after 1 seconds"):
        rt._spawn(build_op_context(), [sys.executable, str(script)], {}, 1, "sleeper", fork=True)


def test_zygote_forks_tasks_and_reports_their_exit_status(tmp_path):
    script = tmp_path / "script.py"
    script.write_text(
        "import os, signal, sys\n"
        "print('pid', os.getpid(), 'ppid', os.getppid(), 'sid', os.getsid(0), 'env', os.environ.get('ONLY'))\n"
        "if sys.argv[1] == 'kill':\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    zygote = zygote_module._Zygote(str(tmp_path))
    try:
        for arg, code in (("0", 0), ("5", 5), ("kill", -9)):
            task = zygote.start([str(script), arg], {"ONLY": arg}, str(tmp_path))
            out = task.stdout.read().decode().split()
            assert task.wait() == code
            # A child of the zygote (not of this process) that leads its own session, with only the env given.
            assert out == ["pid", str(task.pid), "ppid", str(zygote.pid), "sid", str(task.pid), "env", arg]
            task.stdout.close()
            task.stderr.close()
        # An op thread that went away (its status pipe closed) must not take the zygote down with it.
        gone = zygote.start([str(script), "0"], {}, str(tmp_path))
        os.close(gone._status)
        gone.stdout.read()
        for _ in range(300):  # until the zygote has reaped it (and failed to report to nobody)
            if not os.path.exists("/proc/%d" % gone.pid):
                break
            time.sleep(0.1)
        task = zygote.start([str(script), "4"], {}, str(tmp_path))
        task.stdout.read()
        assert task.wait() == 4
    finally:
        zygote.close()
    with pytest.raises(ChildProcessError):
        os.waitpid(zygote.pid, os.WNOHANG)  # close() reaped it
    with pytest.raises(OSError):
        zygote.start([str(script), "0"], {}, str(tmp_path))


def test_zygote_tasks_inherit_the_git_state_it_read_once(tmp_path):
    """The zygote reads the flow directory's git state before it forks: every task finds Metaflow's cache
    filled (and runs no git of its own), with what git says about that directory."""
    repo = os.path.dirname(os.path.abspath(__file__))
    script = tmp_path / "script.py"
    script.write_text("import json\nfrom metaflow import metaflow_git\nprint(json.dumps(metaflow_git._git_info_cache))")
    zygote = zygote_module._Zygote(repo)
    try:
        task = zygote.start([str(script)], {}, str(tmp_path))
        cached = json.loads(task.stdout.read().decode())
        assert task.wait() == 0
        task.stdout.close()
        task.stderr.close()
    finally:
        zygote.close()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    assert cached is not None
    assert cached.get("commit_sha") == (head.stdout.strip() if head.returncode == 0 else None)


def test_zygote_saves_task_logs_in_one_saver_process(tmp_path, monkeypatch):
    """The zygote saves tasks' logs in one process of its own (forked at the first save, a thread per save),
    not a process per task: what each task printed is in Metaflow's datastore, and every save names that
    same saver; a task forked after it keeps no descriptor of it."""
    from metaflow.mflog import RUNTIME_LOG_SOURCE

    monkeypatch.setenv("METAFLOW_USER", "tester")
    flow = {"name": "SaverFlow", "settings": {"datastore": "local", "metadata": "local",
                                              "datastore_root": str(tmp_path / ".metaflow")}}
    script = tmp_path / "fds.py"
    script.write_text("import os\nprint(sorted(os.listdir('/proc/self/fd')))\n")

    def task_fds():
        task = zygote.start([str(script)], {}, str(tmp_path))
        fds = task.stdout.read().decode()
        assert task.wait() == 0
        task.stdout.close()
        task.stderr.close()
        return fds

    zygote = zygote_module._Zygote(str(tmp_path))
    pids, specs = [], []
    try:
        before = task_fds()
        for i in range(3):
            out, err = tmp_path / ("out%d" % i), tmp_path / ("err%d" % i)
            out.write_bytes(b"[MFLOG|0|2026-01-01T00:00:00.000000Z|runtime|x]line %d\n" % i)
            err.write_bytes(b"")
            specs.append({"pathspec": "r1/s/t-%d" % i, "attempt": 0, "flow": flow, "stdout": str(out),
                          "stderr": str(err), "worker": "host:1"})
        threads = [threading.Thread(target=lambda spec=spec: pids.append(zygote.save_logs(spec))) for spec in specs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert pids == [None, None, None]
        assert task_fds() == before
        savers = [p for p in os.listdir("/proc") if p.isdigit() and open("/proc/%s/stat" % p).read().rsplit(")", 1)[1]
                  .split()[1] == str(zygote.pid)]
        assert len(savers) == 1  # one saver, alive until the zygote ends
    finally:
        zygote.close()
    ds = tasks._flow_datastore(flow)
    for i in range(3):
        task = ds.get_task_datastore("r1", "s", "t-%d" % i, attempt=0, mode="r", allow_not_done=True)
        logs = dict(task.load_logs([RUNTIME_LOG_SOURCE], "stdout"))
        assert b"line %d" % i in logs[RUNTIME_LOG_SOURCE]


def test_input_paths_are_what_metaflow_decompresses():
    from metaflow.util import compress_list, decompress_list

    one = ["dagster-1f2e/_parameters/params"]
    assert tasks._input_paths(one) == compress_list(one)
    for paths in (one, ["r/a/t", "r/b/t", "r/c/t"], ["r/body/t-%d" % i for i in range(5000)]):
        assert decompress_list(tasks._input_paths(paths)) == paths
    with pytest.raises(Exception, match="delimiter"):  # Metaflow's own check of what it cannot encode
        tasks._input_paths(["r:1/a/t", "r/b/t"])


FLOW_SRC = """from metaflow import FlowSpec, step
print("flow file runs")


class F(FlowSpec):
    @step
    def start(self):
        self.x = 7
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    F()
"""


def test_forked_tasks_report_what_the_op_reads_back(tmp_path, monkeypatch, capsys):
    """A task the zygote forks sends the op its artifact names and the values it asks for, read through
    Metaflow's datastore in the task; ``init`` is not run again for a run that has its parameters."""
    src = tmp_path / "f_flow.py"
    src.write_text(FLOW_SRC)
    flow = make_flow(tmp_path, file=str(src))
    flow["settings"]["env_allowlist"].append("LC_ALL")  # Metaflow's click wants a UTF-8 locale
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    rt = FlowRuntime(flow, check_stale=False)
    ctx = build_op_context()
    with rt._launcher() as launcher:
        # Only the zygote (forked above) has the real one: a result here came from the task's report.
        monkeypatch.setattr(processes, "_task_info", lambda *a: pytest.fail("read back in the run worker"))
        executor._OP_THREAD.launcher = launcher
        try:
            assert rt._init_params(ctx, "run-1") == "run-1/_parameters/params"
            argv = rt._command("step", "start", "--run-id", "run-1", "--task-id", "t", "--retry-count", "0",
                               "--max-user-code-retries", "0", "--input-paths", "run-1/_parameters/params")
            report = {"pathspec": "run-1/start/t", "keys": ["x"]}
            info = rt._spawn(ctx, argv, rt._env("start"), 0, "start", fork=True, report=report)
            assert capsys.readouterr().out.count("flow file runs") == 2
            assert rt._init_params(ctx, "run-1") == "run-1/_parameters/params"
            assert "flow file runs" not in capsys.readouterr().out
        finally:
            executor._OP_THREAD.launcher = None
    assert info["values"] == {"x": 7} and "x" in info["names"]
    assert not [n for n in info["names"] if n.startswith("_")]


def test_op_thread_tasks_fork_from_the_zygote_and_stop_when_the_run_is_interrupted(tmp_path, capsys):
    import threading

    from dagster import DagsterExecutionInterruptedError

    script = tmp_path / "script.py"
    script.write_text(
        "import os, sys, time\n"
        "print('task', sys.argv[2], os.getpid(), 'parent', os.getppid(), flush=True)\n"
        "time.sleep(float(sys.argv[1]))\n"
    )
    rt = FlowRuntime(make_flow(tmp_path))
    ctx = build_op_context()
    outcome = {}

    def op(name, seconds):
        executor._OP_THREAD.launcher = launcher
        try:
            rt._spawn(ctx, [sys.executable, str(script), seconds, name], {}, 0, name, fork=True)
            outcome[name] = "done"
        except DagsterExecutionInterruptedError:
            outcome[name] = "interrupted"

    def run(name, seconds, wait):
        thread = threading.Thread(target=op, args=(name, seconds))
        thread.start()
        thread.join(wait)
        return thread

    with rt._launcher() as launcher:
        zygote = launcher.zygote.pid
        assert not run("quick", "0", 60).is_alive()
        slow = run("slow", "600", 0)
        pids = wait_for_pids(capsys, "slow")
        launcher.cancel()
        slow.join(30)
        assert not slow.is_alive()
        assert not run("late", "0", 30).is_alive()
    assert outcome == {"quick": "done", "slow": "interrupted", "late": "interrupted"}
    # Tasks are children of the zygote, never of this (multi-threaded) process; the interrupted one is gone.
    assert pids[1] == zygote
    assert not os.path.exists("/proc/%d" % pids[0])


def wait_for_pids(capsys, name):
    """(pid, parent pid) that task ``name`` printed, once its line reached this process's stdout."""
    import re

    seen = ""
    for _ in range(600):
        seen += capsys.readouterr().out
        m = re.search(r"task %s (\d+) parent (\d+)" % name, seen)
        if m:
            return int(m.group(1)), int(m.group(2))
        time.sleep(0.1)
    pytest.fail("task %s printed nothing: %r" % (name, seen))


def test_tasks_that_need_another_interpreter_never_fork(tmp_path, monkeypatch):
    assert FlowRuntime(make_flow(tmp_path))._can_fork("start")
    # @conda / @pypi: the task needs its own environment's interpreter; the run has no zygote at all.
    conda = make_flow(tmp_path)
    conda["settings"]["environment"] = "conda"
    rt = FlowRuntime(conda)
    assert not rt._can_fork(None) and not rt._can_fork("start")
    with rt._launcher() as launcher:
        assert launcher.zygote is None
    # A step that sets METAFLOW_* variables: Metaflow must read its configuration afresh.
    own = make_flow(tmp_path)
    own["steps"]["start"]["env"] = {"METAFLOW_DEFAULT_DATASTORE": "local"}
    assert not FlowRuntime(own)._can_fork("start") and FlowRuntime(own)._can_fork(None)
    monkeypatch.setenv("METAFLOW_DAGSTER_SUBPROCESS", "1")
    assert not FlowRuntime(make_flow(tmp_path))._can_fork("start")


def test_the_executor_probe_names_what_this_dagster_lacks():
    assert executor._threaded_executor_problem() is None  # the installed Dagster: threads
    version = executor.dagster_version()
    assert executor._threaded_executor_problem(
        (("dagster._core.execution.plan.active", "ActiveExecution", ("max_concurrent", "no_such_keyword")),)
    ) == "Dagster %s's dagster._core.execution.plan.active.ActiveExecution has no no_such_keyword" % version
    assert executor._threaded_executor_problem((("dagster._core.no_such_module", "X", ()),)) == (
        "Dagster %s has no dagster._core.no_such_module.X" % version
    )


def test_only_a_process_started_to_run_the_job_forks_its_zygote_at_load():
    from dagster._core.code_pointer import FileCodePointer
    from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
    from dagster._grpc.types import ExecuteRunArgs

    here = executor._executes_job_here
    assert here("F", ["job", "execute", "-f", "defs.py", "-j", "F"])
    assert here("F", ["job", "execute", "-f", "defs.py", "--job=F"])
    assert here("F", ["job", "execute", "-f", "defs.py"])  # the file's only job
    assert not here("F", ["job", "execute", "-f", "defs.py", "-j", "G"])
    for other in (["dev", "-f", "defs.py"], ["api", "grpc", "-f", "defs.py"], ["job", "launch", "-j", "F"], []):
        assert not here("F", other)
    # A run worker of Dagster's run launchers gets its job in a serialized argument.
    origin = JobPythonOrigin("F", RepositoryPythonOrigin(sys.executable, FileCodePointer("defs.py", "F")))
    argv = ExecuteRunArgs(job_origin=origin, run_id="r", instance_ref=None).get_command_args()
    args = argv[argv.index("api"):]
    assert here("F", args) and not here("G", args)
    assert not here("F", ["api", "execute_run", "{not json"])


def test_reused_sqlite_engines_store_every_event_from_many_threads(tmp_path):
    import threading

    from dagster import DagsterInstance
    from dagster._core.events.log import EventLogEntry

    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert executor._reuse_sqlite_engines(instance)
        run_id = "r1"

        def store(thread):
            for i in range(40):
                instance.event_log_storage.store_event(EventLogEntry(
                    error_info=None, level=20, user_message="%d-%d" % (thread, i), run_id=run_id,
                    timestamp=time.time(), step_key="s", job_name="j", dagster_event=None,
                ))

        threads = [threading.Thread(target=store, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        messages = [e.user_message for e in instance.all_logs(run_id)]
        assert sorted(messages) == sorted("%d-%d" % (t, i) for t in range(4) for i in range(40))
        # Per thread, in the order stored.
        assert [m for m in messages if m.startswith("2-")] == ["2-%d" % i for i in range(40)]


def test_the_run_database_held_open_keeps_every_event_and_its_wal(tmp_path):
    """An idle connection held to the run's event-log database: every event is stored and read back as before,
    the WAL is not removed at each write's close while it is held, and nothing is created for a run whose
    database does not exist."""
    from dagster import DagsterInstance
    from dagster._core.events.log import EventLogEntry

    def entry(run_id, i):
        return EventLogEntry(error_info=None, level=20, user_message=str(i), run_id=run_id, timestamp=time.time(),
                             step_key="s", job_name="j", dagster_event=None)

    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        assert executor._reuse_sqlite_engines(instance)
        storage = instance.event_log_storage
        with executor._run_database_held_open(instance, "missing") as held:
            assert held is None and not os.path.exists(storage.path_for_shard("missing"))
        storage.store_event(entry("r1", 0))
        assert not os.path.exists(storage.path_for_shard("r1") + "-wal")  # the last close checkpointed it
        with executor._run_database_held_open(instance, "r1") as held:
            assert held is not None
            for i in range(1, 50):
                storage.store_event(entry("r1", i))
            assert os.path.exists(storage.path_for_shard("r1") + "-wal")
            assert [e.user_message for e in instance.all_logs("r1")] == [str(i) for i in range(50)]
        assert not os.path.exists(storage.path_for_shard("r1") + "-wal")  # checkpointed when it closed
        assert [e.user_message for e in instance.all_logs("r1")] == [str(i) for i in range(50)]


def test_the_multiprocess_executor_is_chosen_by_environment(tmp_path, monkeypatch):
    """METAFLOW_DAGSTER_EXECUTOR=multiprocess in the process loading the file gives jobs Dagster's own
    multiprocess executor, with max_workers as its default max_concurrent (end to end: tests/e2e/test_executor.py)."""
    rt = FlowRuntime(make_flow(tmp_path), check_stale=False)
    assert executor.make_executor(rt).name == "metaflow_threads"
    monkeypatch.setenv("METAFLOW_DAGSTER_EXECUTOR", "multiprocess")
    chosen = executor.make_executor(rt)
    assert chosen.name == "metaflow_multiprocess"
    assert chosen.config_schema.config_type.fields["max_concurrent"].default_value == rt.flow["options"]["max_workers"]
