"""Benchmark: the same Metaflow flows run natively, through this project on Dagster, and through 0.3.7.

    python bench/run.py --reps 3            # every flow and variant, 3 repetitions, interleaved
    python bench/run.py --reps 1 --flows linear-5 --variants native,ours

Variants, each launched as a user launches it, from its own work directory under bench/.work:

* ``native``: ``python flow.py run``.
* ``ours``: ``python flow.py dagster create defs.py`` once (not timed), then, timed,
  ``dagster job execute -f defs.py -j JOB``. Runs with the interpreter running this script (and the
  ``dagster`` script beside it).
* ``celery``: as ``ours``, compiled with ``create --executor celery``: the run worker submits every step to
  Dagster's Celery executor, and two ``dagster-celery worker start`` processes (two pool processes each) run
  them, with Debian's ``redis-server`` as broker and result backend. Redis and the workers are started with
  the cell and stay up across its repetitions (untimed, as a user's workers exist before they run flows);
  they share the cell's DAGSTER_HOME (SQLite) and local datastore, which one machine allows.
* ``0.3.7``: metaflow-dagster 0.3.7 from PyPI in its own virtual environment (``bench/.venv-0.3.7``, made
  on first use, with this environment's metaflow and dagster versions pinned), checked to load only its
  own Metaflow extension; ``python flow.py dagster create out.py`` once, then ``dagster job execute``.

Both Dagster variants run on one DAGSTER_HOME per cell (telemetry off) whose storage is created with the
cell, untimed, as a user's instance exists before they run flows on it; ``--fresh-home`` gives every
repetition a new, empty DAGSTER_HOME instead (then each run also pays for creating the instance's
databases, about 0.3 s of CPU on this machine).

Every command runs under a forked *measuring process* that is a child subreaper: orphaned descendants
(forkserver, daemonised helpers) are re-parented to it and reaped, so ``getrusage(RUSAGE_CHILDREN)`` of
that process covers the whole tree. It reports wall time (until the launched command exits), CPU
(user+sys of the whole tree), ``ru_maxrss`` (the largest single process of the tree) and the peak PSS of
the tree summed over its processes, sampled from /proc every 0.2 s (shared pages counted once).
After each run the Metaflow client must see a new, successful run with every expected task; otherwise
the cell is a failure with its reason, never a time.

Prints a markdown table of medians and ratios to native, and writes it, with the machine and versions,
between the markers in bench/RESULTS.md (the rest of that file is written by hand).
"""

import argparse
import ctypes
import datetime
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from importlib import metadata
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "RESULTS.md"
OLD_VERSION = "0.3.7"
# name: (file in bench/flows, flow class, tasks a successful run has)
FLOWS = {
    "linear-5": ("linear5.py", "BenchLinearFlow", 5),
    "branch-3": ("branch3.py", "BenchBranchFlow", 6),
    "foreach-20": ("foreach20.py", "BenchForeachFlow", 23),
    "nested-4x4": ("nested4x4.py", "BenchNestedFlow", 27),
    "foreach-200": ("foreach200.py", "BenchForeach200Flow", 203),
}
# Options a flow needs both ways: Metaflow refuses more than 100 splits unless --max-num-splits allows them
# (`run --max-num-splits`, and `dagster create --max-num-splits` for the deployed run).
SPLITS = {"foreach-200": ["--max-num-splits", "1000"]}
VARIANTS = ("native", "ours", "celery", OLD_VERSION)
TARGETS = {"linear-5": 0.8, "foreach-20": 0.4, "nested-4x4": 0.4, "foreach-200": 0.15}  # ours / native, at most
CHECK = """import json, sys
from metaflow import Flow, namespace
namespace(None)
run = Flow(sys.argv[1]).latest_run
counts = {s.id: sum(1 for _ in s) for s in run}
print(run.id, bool(run.finished and run.successful), sum(counts.values()), json.dumps(counts, separators=(",", ":")))
"""


# ----- measuring one command --------------------------------------------------------------------------


def _tree_pss_kb(root):
    """PSS (kB) summed over ``root``'s descendants, read from /proc."""
    children = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(Path("/proc", d, "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(d))
    total, todo = 0, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            rollup = Path("/proc", str(pid), "smaps_rollup").read_text()
            total += int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))
        except (OSError, AttributeError):
            pass
    return total


def _measure_here(argv, env, cwd, log, timeout):
    """Body of the measuring process: run ``argv``, reap the whole tree, return the numbers."""
    ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    peak, done = [0], threading.Event()

    def sample():
        while not done.wait(0.2):
            peak[0] = max(peak[0], _tree_pss_kb(os.getpid()))

    threading.Thread(target=sample, daemon=True).start()
    t0 = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = "timeout after %ds" % timeout
            proc.wait()
    wall = time.perf_counter() - t0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # reap what the command left behind (re-parented to us)
        try:
            if os.waitpid(-1, os.WNOHANG) == (0, 0):
                time.sleep(0.05)
        except ChildProcessError:
            break
    done.set()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"rc": rc, "wall": wall, "cpu": ru.ru_utime + ru.ru_stime, "maxrss_mb": ru.ru_maxrss / 1024,
            "pss_mb": peak[0] / 1024}


def measure(argv, env, cwd, log, timeout=900):
    """Run ``argv`` in a fresh measuring process (so ru_maxrss is this run's); returns _measure_here's dict."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the measuring process
        try:
            os.close(r)
            os.write(w, json.dumps(_measure_here(argv, env, cwd, log, timeout)).encode())
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    if not data:
        raise RuntimeError("the measuring process of %s failed" % argv)
    return json.loads(data)


def last_error(log):
    """The most telling line of a failed command's output."""
    lines = [ln.strip() for ln in Path(log).read_text(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if re.search(r"(Error|Exception|error:)", ln) and not ln.startswith("File "):
            return ln[-240:]
    return lines[-1][-240:] if lines else "no output"


# ----- the variants -----------------------------------------------------------------------------------


def _bin(python, script):
    return str(Path(python).parent / script)


def old_venv(path):
    """Python of the 0.3.7 virtual environment, made on first use; checks our plugin is not loadable."""
    python = path / "bin" / "python"
    if not python.exists():
        print("creating %s (metaflow-dagster==%s from PyPI)" % (path, OLD_VERSION), flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
        pins = ["metaflow-dagster==" + OLD_VERSION, "metaflow==" + metadata.version("metaflow"),
                "dagster==" + metadata.version("dagster")]
        with open(path / "pip-install.log", "w") as log:
            subprocess.run([str(python), "-m", "pip", "install", *pins], stdout=log, stderr=log, check=True)
    show = subprocess.run([str(python), "-m", "pip", "show", "metaflow-dagster"], capture_output=True,
                          text=True, check=True).stdout
    probe = ("import importlib.util as u, json; from metaflow.extension_support import get_modules; "
             "print(json.dumps([u.find_spec('metaflow_dagster') is None, "
             "[m.tl_package for m in get_modules('plugins')]]))")
    absent, plugins = json.loads(subprocess.run([str(python), "-c", probe], capture_output=True, text=True,
                                                cwd=path, env=clean_env(), check=True).stdout)
    if "Version: %s" % OLD_VERSION not in show or str(path) not in show or not absent or plugins != ["dagster"]:
        sys.exit("%s is not an isolated metaflow-dagster %s: %s %s\n%s" % (path, OLD_VERSION, absent, plugins, show))
    return str(python)


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DAGSTER_HOME")}
    env.setdefault("METAFLOW_USER", "bench")
    env.update(extra)
    return env


def fresh_dagster_home(path):
    path.mkdir(parents=True)
    (path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    return str(path)


INIT_INSTANCE = "from dagster import DagsterInstance; DagsterInstance.get().dispose()"


class Cell:
    """One (flow, variant): its work directory, the create step, and the timed command of a repetition."""

    def __init__(self, flow, variant, work, python, fresh_home=False):
        self.flow, self.variant, self.python, self.fresh_home = flow, variant, python, fresh_home
        self.file, self.flow_name, self.tasks = FLOWS[flow]
        self.dir = work / flow / variant
        self.dir.mkdir(parents=True)
        self.env = clean_env(METAFLOW_DATASTORE_SYSROOT_LOCAL=str(self.dir))
        self.runs, self.unchecked, self.error, self.seen = [], [], None, set()
        self.defs = {"ours": "defs.py", "celery": "defs.py", OLD_VERSION: "out.py"}.get(variant)
        self.servers = []

    def create(self):
        if not self.defs:
            return
        argv = [self.python, str(BENCH / "flows" / self.file), "dagster", "create", self.defs]
        if self.variant in ("ours", "celery"):
            argv += SPLITS.get(self.flow, [])
        if self.variant == "celery":
            argv += ["--executor", "celery", "--executor-config", json.dumps(
                {"broker": {"env": "DAGSTER_CELERY_BROKER_URL"}, "backend": {"env": "DAGSTER_CELERY_BACKEND_URL"}})]
        # The instance every repetition uses, its storage created here, untimed: a user's instance exists
        # before they run flows on it (with --fresh-home each repetition gets a new one instead).
        self.home = fresh_dagster_home(self.dir / "dagster-home")
        env = dict(self.env, DAGSTER_HOME=self.home)
        res = subprocess.run(argv, env=env, cwd=self.dir, capture_output=True, text=True)
        if not res.returncode and not self.fresh_home:
            init = subprocess.run([self.python, "-c", INIT_INSTANCE], env=env, cwd=self.dir, capture_output=True,
                                  text=True)
            res.returncode, res.stderr = init.returncode, res.stderr + init.stderr
        if res.returncode or not (self.dir / self.defs).exists():
            (self.dir / "create.log").write_text(res.stdout + res.stderr)
            self.error = "create failed: " + last_error(self.dir / "create.log")
        elif self.variant == "celery":
            self.start_celery()

    def start_celery(self):
        """redis-server on a free port and two Celery workers (two pool processes each), on this cell's home."""
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        url = "redis://127.0.0.1:%d" % port
        self.env = dict(self.env, DAGSTER_CELERY_BROKER_URL=url + "/0", DAGSTER_CELERY_BACKEND_URL=url + "/1")
        config = self.dir / "celery.yaml"
        config.write_text(json.dumps({"execution": {"config": {"broker": url + "/0", "backend": url + "/1"}}}))
        argvs = [["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", "",
                  "--appendonly", "no"]]
        argvs += [[_bin(self.python, "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-n", name,
                   "-y", str(config), "-q", "dagster", "--", "--concurrency=2"] for name in ("bench1", "bench2")]
        # dagster-celery starts `celery` from PATH: this interpreter's.
        env = dict(self.env, DAGSTER_HOME=self.home, PATH=os.pathsep.join([str(Path(self.python).parent),
                                                                            os.environ.get("PATH", "")]))
        for i, argv in enumerate(argvs):
            with open(self.dir / ("server%d.log" % i), "ab") as log:
                self.servers.append(subprocess.Popen(argv, env=env, cwd=self.dir, stdout=log, stderr=subprocess.STDOUT,
                                                     stdin=subprocess.DEVNULL, start_new_session=True))
        from celery import Celery

        app = Celery("dagster", broker=url + "/0", backend=url + "/1")
        deadline = time.time() + 120
        while True:
            try:
                names = {n.split("@")[0] for reply in app.control.ping(timeout=1.0) for n in reply}
            except Exception:  # redis not up yet
                names = set()
            if names >= {"bench1", "bench2"}:
                return
            if time.time() > deadline or any(p.poll() is not None for p in self.servers):
                self.stop()
                self.error = "the Celery workers did not answer (logs: %s)" % self.dir
                return
            time.sleep(0.5)

    def stop(self):
        """End the Celery workers and redis-server this cell started, each by its process group."""
        import signal

        for p in self.servers:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(30)
        self.servers = []

    def run(self, rep):
        if self.error and not self.unchecked:  # create or a command failed: do not repeat it
            return
        log = self.dir / ("rep%d.log" % rep)
        env = self.env
        if self.defs:
            argv = [_bin(self.python, "dagster"), "job", "execute", "-f", self.defs, "-j", self.flow_name]
            home = fresh_dagster_home(self.dir / ("dagster-home-%d" % rep)) if self.fresh_home else self.home
            env = dict(env, DAGSTER_HOME=home)
        else:
            argv = [self.python, str(BENCH / "flows" / self.file), "run"] + SPLITS.get(self.flow, [])
        res = measure(argv, env, self.dir, log)
        problem = None if res["rc"] == 0 else "exit %s: %s" % (res["rc"], last_error(log))
        if problem is None:
            chk = subprocess.run([sys.executable, "-c", CHECK, self.flow_name], env=self.env, cwd=self.dir,
                                 capture_output=True, text=True)
            run_id, ok, n, steps = (chk.stdout.split() + ["", "", "", ""])[:4]
            if chk.returncode or run_id in self.seen or ok != "True" or n != str(self.tasks):
                problem = ("Metaflow client: run %s finished and successful: %s; %s of %d tasks visible %s %s" % (
                    run_id, ok, n, self.tasks, steps, chk.stderr.strip()[-200:])).strip()
            self.seen.add(run_id)
        if problem:
            self.error = self.error or problem
            if res["rc"] == 0:  # it ran but its result is wrong: keep the time, reported beside the failure
                self.unchecked.append(res)
        else:
            self.runs.append(res)
        print("  rep %d %-10s %-7s %s" % (rep, self.flow, self.variant, problem or
              "wall %.2fs cpu %.2fs maxrss %.0fMB pss %.0fMB" % (res["wall"], res["cpu"], res["maxrss_mb"],
                                                                 res["pss_mb"])), flush=True)

    def median(self, key, unchecked=False):
        """Median of ``key`` over the checked runs (None if the cell failed), or with ``unchecked`` over every
        run that exited 0, including those that failed the check."""
        runs = self.runs + self.unchecked if unchecked else self.runs if not self.error else []
        return statistics.median(r[key] for r in runs) if runs else None


# ----- report -----------------------------------------------------------------------------------------


def machine(old_python):
    cpu = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
    rev = subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"], capture_output=True,
                         text=True).stdout.strip()
    old = ""
    if old_python:
        old = subprocess.run([old_python, "-c", "import metaflow, dagster; print(metaflow.__version__, "
                              "dagster.__version__)"], capture_output=True, text=True, cwd="/").stdout.split()
        old = "; 0.3.7 venv: Metaflow %s, Dagster %s" % tuple(old) if len(old) == 2 else ""
    ours = importlib.util.find_spec("metaflow_dagster").origin.rsplit("/metaflow_dagster/", 1)[0]
    return ("%s on %d cores (%s), %s; Python %s, Metaflow %s, Dagster %s, metaflow-dagster %s from %s (repo at "
            "git %s)%s" % (datetime.date.today().isoformat(), os.cpu_count(), cpu.group(1) if cpu else "unknown CPU",
                           platform.platform(terse=True), platform.python_version(), metadata.version("metaflow"),
                           metadata.version("dagster"), metadata.version("metaflow-dagster"), ours, rev or "?", old))


def table(cells, reps):
    def fmt(v, spec):
        return "-" if v is None else spec % v

    rows = ["| flow | variant | wall s | wall / native | CPU s | CPU / native | max RSS MB | peak PSS MB | ok |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    notes, verdicts = [], []
    for flow in dict.fromkeys(c.flow for c in cells):
        row = {c.variant: c for c in cells if c.flow == flow}
        nat = row.get("native")
        for v, c in row.items():
            wall, cpu = c.median("wall"), c.median("cpu")
            nw, nc = (nat.median("wall"), nat.median("cpu")) if nat else (None, None)
            if c.error:
                notes.append("* %s / %s failed: `%s`" % (flow, v, c.error.replace("`", "'")))
            if c.unchecked:
                notes[-1] += "; its %d run(s) that exited 0 but failed the check took median wall %.2f s, CPU %.2f s" % (
                    len(c.runs + c.unchecked), c.median("wall", True), c.median("cpu", True))
            rows.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                flow, v, fmt(wall, "%.2f") if not c.error else "**FAILED**",
                fmt(wall / nw if wall and nw else None, "%.2f"), fmt(cpu, "%.2f"),
                fmt(cpu / nc if cpu and nc else None, "%.2f"), fmt(c.median("maxrss_mb"), "%.0f"),
                fmt(c.median("pss_mb"), "%.0f"), "%d/%d" % (len(c.runs) if not c.error else 0, reps)))
        cel = row.get("celery")
        if cel and nat and cel.median("wall") and nat.median("wall"):
            verdicts.append("* %s: celery/native %.2f (two Celery workers, two pool processes each, Redis)" % (
                flow, cel.median("wall") / nat.median("wall")))
        ours, old = row.get("ours"), row.get(OLD_VERSION)
        if ours and nat and ours.median("wall") and nat.median("wall"):
            ratio = ours.median("wall") / nat.median("wall")
            parts = ["ours/native %.2f" % ratio]
            if flow in TARGETS:
                parts.append("target <= %g: %s" % (TARGETS[flow], "met" if ratio <= TARGETS[flow] else "NOT met"))
            if old:
                ow = old.median("wall", True)
                verdict = "yes (0.3.7 failed)" if ow is None else "%s (%.2fx)%s" % (
                    "yes" if ow > ours.median("wall") else "NO", ow / ours.median("wall"),
                    ", against 0.3.7's runs that failed the check" if old.error else "")
                parts.append("faster than 0.3.7: " + verdict)
            verdicts.append("* %s: %s" % (flow, "; ".join(parts)))
    return "\n".join(rows + [""] + verdicts + notes)


def write_results(section, begin="<!-- bench:begin -->", end="<!-- bench:end -->"):
    """Replace the text between ``begin`` and ``end`` in RESULTS.md (appending them if missing)."""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = "%s\n%s\n%s" % (begin, section.strip(), end)
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--flows", default=",".join(FLOWS), help="comma-separated, from: %s" % ", ".join(FLOWS))
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: %s" % ", ".join(VARIANTS))
    ap.add_argument("--venv", type=Path, default=BENCH / (".venv-" + OLD_VERSION), help="0.3.7's environment")
    ap.add_argument("--work", type=Path, default=BENCH / ".work", help="wiped and refilled")
    ap.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    ap.add_argument("--fresh-home", action="store_true",
                    help="a new, empty DAGSTER_HOME for every repetition (default: one per cell, made before timing)")
    args = ap.parse_args()
    flows, variants = args.flows.split(","), args.variants.split(",")
    if not set(flows) <= set(FLOWS) or not set(variants) <= set(VARIANTS):
        ap.error("unknown flow or variant")
    old_python = old_venv(args.venv.resolve()) if OLD_VERSION in variants else None
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    cells = [Cell(f, v, work, old_python if v == OLD_VERSION else sys.executable, args.fresh_home)
             for f in flows for v in variants]
    try:
        for c in cells:
            c.create()
        load, host = os.getloadavg()[0], machine(old_python)
        for rep in range(args.reps):  # interleaved, so drift in the machine's load hits every variant alike
            for c in cells:
                c.run(rep)
    finally:
        for c in cells:
            c.stop()
    header = ("Run %s: `python bench/run.py %s`; medians of %d repetitions; DAGSTER_HOME %s; load average %.1f "
              "before, %.1f after.\n%s") % (
        datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), " ".join(sys.argv[1:]), args.reps,
        "new per repetition" if args.fresh_home else "one per cell, made before timing", load,
        os.getloadavg()[0], host)
    out = "%s\n\n%s\n" % (header, table(cells, args.reps))
    print("\n" + out)
    if not args.no_write:
        write_results(out)
        print("wrote %s" % RESULTS)


if __name__ == "__main__":
    main()
