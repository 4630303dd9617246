"""Benchmark: hundreds of deployed flows on one Dagster instance, and the serving designs compared.

    python bench/many_flows.py                  # 200 flows served as create deploys them; 10 as one location each
    python bench/many_flows.py --flows 50 --per-location 5

* ``one location`` (what `create` does): N fleet flows (tests/fleet.py: small real flows, deployed as
  `create` deploys them) served by ``dagster dev -w $DAGSTER_HOME/metaflow/workspace.yaml``. Reports the time
  until the webserver serves every job, the processes of the server and their resident memory together, then
  one more flow deployed with the real `create` while it serves: the time `create` takes, and the time from
  its start until the flow's triggered run is STARTED.
* ``a location per flow`` (the earlier design), with and without ``--use-legacy-code-server-behavior``: M of
  the same flows, each file its own code location of one workspace, served by ``dagster dev -w``; reports the
  same memory once every location is loaded and the daemon has started its code servers.

Every number is read off the running processes (/proc) and the webserver's GraphQL; nothing is estimated.
Prints a markdown table (and writes it between the markers in bench/RESULTS.md unless --no-write).
"""

import argparse
import datetime
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from metaflow_dagster import deployments  # noqa: E402
from tests import fleet  # noqa: E402
from tests.helpers import free_port, wait_for  # noqa: E402

RESULTS = os.path.join(REPO, "bench", "RESULTS.md")
BEGIN, END = "<!-- many-flows:begin -->", "<!-- many-flows:end -->"


def group_pids(pgid):
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.getpgid(int(p)) == pgid:
                    pids.append(int(p))
            except OSError:
                continue
    return pids


def serve(root, env, workspace, extra=()):
    port = free_port()
    log = open(os.path.join(root, "dev-%d.log" % port), "w")
    proc = subprocess.Popen(["dagster", "dev", "-w", workspace, "-p", str(port), *extra], env=env, cwd=root,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return proc, "http://127.0.0.1:%d" % port


def stop(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


LOCATIONS = "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError { " \
            "__typename ... on RepositoryLocation { repositories { jobs { name } } } } } } } }"


def served_jobs(url):
    try:
        entries = deployments.graphql(url, LOCATIONS)["workspaceOrError"]["locationEntries"]
    except deployments.DeploymentException:
        return None
    if not all(e["loadStatus"] == "LOADED" for e in entries):
        return None
    return {j["name"] for e in entries for r in (e["locationOrLoadError"] or {}).get("repositories", ())
            for j in r["jobs"] if not j["name"].startswith("__")}


def one_location(root, n, env):
    home = os.path.join(root, "home")
    os.makedirs(home)
    started = time.monotonic()
    fleet.deploy_fleet(home, root, n, env)
    deployed = time.monotonic() - started
    env = dict(env, DAGSTER_HOME=home)
    proc, url = serve(root, env, deployments.Workspace(home).path)
    try:
        started = time.monotonic()
        wait_for(lambda: (served_jobs(url) or ()) and len(served_jobs(url)) == n, 600, "%d jobs served" % n)
        served_in = time.monotonic() - started
        pids = group_pids(proc.pid)
        memory, servers = fleet.rss_bytes(pids), len(fleet.code_servers(pids))
        new = fleet.write_flow(root, n)
        started = time.monotonic()
        subprocess.run([sys.executable, new, "--no-pylint", "dagster", "create"], env=env, cwd=root, check=True,
                       capture_output=True)
        created = time.monotonic() - started
        res = subprocess.run([sys.executable, new, "--no-pylint", "dagster", "trigger"], env=env, cwd=root,
                             check=True, capture_output=True, text=True)
        dagster_run_id = re.search(r"Dagster run ([0-9a-f-]{36})", res.stderr).group(1)
        from dagster import DagsterInstance, DagsterRunStatus

        def started_run():
            with DagsterInstance.from_config(home) as inst:
                run = inst.get_run_by_id(dagster_run_id)
                return run is not None and run.status in (DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS)

        wait_for(started_run, 300, "the new flow's run to start", interval=0.2)
        running = time.monotonic() - started
        return {"deployed": deployed, "served": served_in, "processes": len(pids), "memory": memory,
                "create": created, "create_to_started": running, "code_servers": servers}
    finally:
        stop(proc)


def per_location(root, m, env, legacy):
    home = os.path.join(root, "home")
    os.makedirs(home)
    jobs = fleet.deploy_fleet(home, root, m, env)
    workspace = os.path.join(root, "per_location.yaml")
    with open(workspace, "w") as f:
        f.write("load_from:\n" + "".join("- python_file: {relative_path: %s, location_name: %s}\n" % (d, j)
                                         for j, d in jobs.items()))
    env = dict(env, DAGSTER_HOME=home)
    proc, url = serve(root, env, workspace, ["--use-legacy-code-server-behavior"] if legacy else [])
    try:
        wait_for(lambda: (served_jobs(url) or ()) and len(served_jobs(url)) == m, 600, "%d locations served" % m)
        # Legacy: the webserver and the daemon start a code server per location each (the daemon after the
        # webserver); otherwise dagster dev starts one per location (behind a proxy process each).
        expected = 2 * m if legacy else m
        wait_for(lambda: len(fleet.code_servers(group_pids(proc.pid))) >= expected, 300,
                 "%d code servers to run" % expected)
        pids = group_pids(proc.pid)
        return {"processes": len(pids), "memory": fleet.rss_bytes(pids), "code_servers": len(fleet.code_servers(pids))}
    finally:
        stop(proc)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--flows", type=int, default=200)
    parser.add_argument("--per-location", type=int, default=10)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    env = dict(os.environ, USER=os.environ.get("USER", "bench"))
    work = tempfile.mkdtemp(prefix="mfd-many-")
    env["METAFLOW_DATASTORE_SYSROOT_LOCAL"] = work
    rows = []
    try:
        for label, fn in (
            ("one location (create)", lambda root: one_location(root, args.flows, env)),
            ("a location per flow, legacy", lambda root: per_location(root, args.per_location, env, True)),
            ("a location per flow, default", lambda root: per_location(root, args.per_location, env, False)),
        ):
            root = os.path.join(work, label.split(" (")[0].replace(" ", "_").replace(",", ""))
            os.makedirs(root)
            n = args.flows if label.startswith("one") else args.per_location
            r = fn(root)
            rows.append("| %s | %d | %d | %d | %.0f MB | %.0f MB | %s | %s |" % (
                label, n, r["processes"], r["code_servers"], r["memory"] / 2**20, r["memory"] / 2**20 / n,
                "%.0f s" % r["served"] if "served" in r else "",
                "%.1f s / %.1f s" % (r["create"], r["create_to_started"]) if "create" in r else ""))
            print(rows[-1], flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load = os.getloadavg()
    table = "\n".join([
        "Measured %s on %d cores (load %.1f %.1f %.1f), `python bench/many_flows.py --flows %d --per-location %d`."
        % (datetime.date.today(), os.cpu_count(), *load, args.flows, args.per_location),
        "",
        "| serving | flows | processes | code servers | resident memory | per flow | all jobs served after "
        "| one more `create` / create → its run STARTED |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
        *rows,
    ])
    print(table)
    if not args.no_write:
        with open(RESULTS) as f:
            text = f.read()
        block = "%s\n%s\n%s" % (BEGIN, table, END)
        text = re.sub(re.escape(BEGIN) + ".*?" + re.escape(END), lambda _: block, text, flags=re.S) \
            if BEGIN in text else text.rstrip("\n") + "\n\n## Hundreds of deployed flows\n\n" + block + "\n"
        with open(RESULTS, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
