"""Where the time of one ``dagster job execute`` of this project goes, op by op.

    python bench/profile_task.py                    # linear-5; prints, and updates its section of RESULTS.md
    python bench/profile_task.py --flow foreach-20 --no-write

Runs variant ``ours`` of bench/run.py once (``dagster create`` and the instance's storage untimed, then
``dagster job execute``), then reads the run's Dagster event log (event timestamps) and the Metaflow metadata of
each task (millisecond timestamps the task process records itself: its first metadata when Metaflow has
started the task, ``attempt-done`` when the task body and its artifacts are done). Ops run as threads of
the run worker (the runtime's executor), so an op starts at its STEP_START. Per op:

    inputs     STEP_START -> "running Metaflow step"         input loading (IO manager) and the runtime's prep
    task boot  -> first Metaflow metadata                    the zygote's fork, the flow file run as __main__,
                                                             Metaflow's CLI up to the task's start
    task body  -> attempt-done                               the step's code, artifacts saved, metadata
    task exit  -> STEP_OUTPUT                                the task process ends, the op reads the datastore
    output     STEP_OUTPUT -> STEP_SUCCESS                   the IO manager pickles the output, events
    total      STEP_START -> STEP_SUCCESS

and for the run: process start -> the interpreter running, the dagster CLI imported, the instance ready,
the definitions file loaded (these four from marks that STARTUP_PROBE records, with the process's CPU
time), RUN_START (the run and its plan created); RUN_START -> the first STEP_START (the executor's set-up:
resources, log capture, metaflow import, zygote); the hand-offs (an op's success -> the next STEP_START,
on the critical path); last STEP_SUCCESS -> RUN_SUCCESS; RUN_SUCCESS -> process exit.
"""

import argparse
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

from run import FLOWS, Cell, machine, measure, write_results

# `dagster job execute ...` as the dagster script runs it, plus marks (wall time, this process's CPU time) when the
# CLI is imported, the instance is ready and the definitions are loaded, written as JSON to argv[1] at exit. It
# only wraps two functions of dagster._cli.job; what they do is unchanged.
STARTUP_PROBE = r"""
import atexit, json, os, sys, time
from contextlib import contextmanager
marks = []
def mark(what):
    c = os.times()
    marks.append((what, time.time(), c.user + c.system))
mark("interpreter")
import dagster._cli.job as job
from dagster._cli import main
mark("cli")
get_instance, load_definitions = job.get_possibly_temporary_instance_for_cli, job._get_job_python_origin_from_cli_opts
@contextmanager
def instance(*args, **kwargs):
    with get_instance(*args, **kwargs) as i:
        mark("instance")
        yield i
def definitions(*args, **kwargs):
    origin = load_definitions(*args, **kwargs)
    mark("definitions")
    return origin
job.get_possibly_temporary_instance_for_cli, job._get_job_python_origin_from_cli_opts = instance, definitions
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(marks)))
sys.argv[0] = "dagster"
main()
"""
STARTUP = (("interpreter", "Python started"), ("cli", "dagster CLI imported"),
           ("instance", "instance ready (storage: sqlalchemy, alembic, sqlite)"),
           ("definitions", "definitions file loaded (the runtime, FlowRuntime, the job)"))

PHASES = ("inputs", "task boot", "task body", "task exit", "output", "total")


def op_phases(records, task_times):
    """{step_key: {phase: seconds}} from the event log records and {pathspec: (first ms, done ms)}."""
    ev = {}
    for r in records:
        kind = r.dagster_event.event_type_value if r.dagster_event else "LOG"
        if r.step_key:
            ev.setdefault(r.step_key, {}).setdefault(kind, r.timestamp)
            m = re.match(r"running Metaflow step '[^']+' \(task (\S+),", r.user_message or "")
            if m:
                ev[r.step_key]["running"], ev[r.step_key]["task"] = r.timestamp, m.group(1)
    out = {}
    for key, e in ev.items():
        first, done = task_times.get(e.get("task"), (None, None))
        marks = [e.get("STEP_START"), e.get("running"), first, done, e.get("STEP_OUTPUT"), e.get("STEP_SUCCESS")]
        if marks[1] is None:  # barrier ops (no Metaflow task) are only hand-offs
            continue
        row = {name: b - a if a is not None and b is not None else None
               for name, a, b in zip(PHASES, marks, marks[1:])}
        row["total"] = marks[-1] - marks[0] if marks[0] and marks[-1] else None
        row["_launch"], row["_success"] = marks[0], marks[-1]
        out[key] = row
    return out


def report(flow, res, t0, records, ops, host, marks):
    kinds = {}
    for r in records:
        if r.dagster_event:
            kinds.setdefault(r.dagster_event.event_type_value, []).append(r.timestamp)
    run_start, run_end = kinds["PIPELINE_START"][0], kinds["PIPELINE_SUCCESS"][0]
    launches = sorted(o["_launch"] for o in ops.values() if o["_launch"])
    successes = sorted(o["_success"] for o in ops.values() if o["_success"])
    # hand-off: for each launch, the time since the latest op success before it (the op it waited for)
    handoffs = [t - max(s for s in successes if s < t) for t in launches if any(s < t for s in successes)]
    lines = [
        "Flow %s, one run of variant ours: wall %.2f s, CPU %.2f s (whole process tree).\n%s" % (
            flow, res["wall"], res["cpu"], host),
        "",
        "| run phase | s | CPU s |",
        "|---|--:|--:|",
    ]
    at, cpu = {name: (t, c) for name, t, c in marks}, 0.0
    previous = t0
    for name, label in STARTUP:
        lines.append("| -> %s | %.2f | %.2f |" % (label, at[name][0] - previous, at[name][1] - cpu))
        previous, cpu = at[name]
    lines += [
        "| -> RUN_START (run and plan created, first event) | %.2f | |" % (run_start - previous),
        "| **process start -> RUN_START** | **%.2f** | |" % (run_start - t0),
        "| RUN_START -> first STEP_START (executor set-up) | %.2f | |" % (launches[0] - run_start),
        "| ops, first STEP_START -> last STEP_SUCCESS | %.2f | |" % (successes[-1] - launches[0]),
        "| last STEP_SUCCESS -> RUN_SUCCESS | %.2f | |" % (run_end - successes[-1]),
        "| RUN_SUCCESS -> process exit | %.2f | |" % (t0 + res["wall"] - run_end),
        "| median hand-off (an op's success -> the next STEP_START) | %.2f | |"
        % (statistics.median(handoffs) if handoffs else 0),
        "",
        "| op | " + " | ".join(PHASES) + " |",
        "|---|" + "--:|" * len(PHASES),
    ]

    def cell(v):
        return "-" if v is None else "%.3f" % v

    for key in sorted(ops, key=lambda k: ops[k]["_launch"] or 0):
        lines.append("| %s | %s |" % (key, " | ".join(cell(ops[key][p]) for p in PHASES)))
    med = [statistics.median(v) if v else None for v in ([o[p] for o in ops.values() if o[p] is not None]
                                                          for p in PHASES)]
    lines.append("| **median** | %s |" % " | ".join(cell(v) for v in med))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flow", default="linear-5", choices=list(FLOWS))
    ap.add_argument("--work", type=Path, default=Path(__file__).resolve().parent / ".work" / "profile")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = ap.parse_args()
    work = args.work.resolve()
    if work.exists():
        import shutil

        shutil.rmtree(work)
    host = machine(None)
    cell = Cell(args.flow, "ours", work, sys.executable)
    cell.create()
    if cell.error:
        sys.exit(cell.error)
    home = cell.home  # made by create(), as bench/run.py does
    marks_file = cell.dir / "startup-marks.json"
    argv = [sys.executable, "-c", STARTUP_PROBE, str(marks_file), "job", "execute", "-f", cell.defs, "-j",
            cell.flow_name]
    t0 = time.time()
    res = measure(argv, dict(cell.env, DAGSTER_HOME=home), cell.dir, cell.dir / "rep0.log")
    if res["rc"] != 0:
        sys.exit("run failed, see %s" % (cell.dir / "rep0.log"))

    os.environ.update(cell.env)  # the Metaflow client reads the datastore root at import
    from dagster import DagsterInstance
    from dagster._core.instance.ref import InstanceRef
    from metaflow import Task, namespace

    namespace(None)
    with DagsterInstance.from_ref(InstanceRef.from_dir(home)) as instance:
        (run,) = instance.get_runs()
        records = instance.all_logs(run.run_id)
    pathspecs = {m.group(1) for r in records for m in [re.match(r"running Metaflow step '[^']+' \(task (\S+),",
                                                                  r.user_message or "")] if m}
    task_times = {}
    for p in pathspecs:
        # the log line names the task with its flow (Flow/run/step/task); older runtimes named it without
        full = p if p.count("/") == 3 else "%s/%s" % (cell.flow_name, p)
        md = {m.name: m.created_at / 1000.0 for m in Task(full).metadata}
        task_times[p] = (min(md.values()), md.get("attempt-done"))
    out = report(args.flow, res, t0, records, op_phases(records, task_times), host, json.loads(marks_file.read_text()))
    print(out)
    if not args.no_write:
        write_results(out, "<!-- profile:%s:begin -->" % args.flow, "<!-- profile:%s:end -->" % args.flow)


if __name__ == "__main__":
    main()
