"""Throwaway infrastructure for the multi-process tests: PostgreSQL, an S3 server, separate Dagster processes.

Everything runs on loopback, on free ports, under one temporary directory per fixture, and is stopped by
the pid this module started (never by name: other people's servers may run on the same machine).

* ``Postgres``: a real PostgreSQL cluster from Debian's ``postgresql`` package (``initdb`` + ``postgres``
  in the foreground). PostgreSQL refuses to run as root, so under root the cluster belongs to the
  ``postgres`` user. Password authentication (scram) is on: the password lives only in this process and in
  the ``DAGSTER_PG_PASSWORD`` environment variable the Dagster processes read, so tests can check that it
  leaks nowhere.
* ``S3Server``: moto's server mode, an S3 API on loopback with a bucket for Metaflow's datastore, and the
  dummy credentials and endpoint Metaflow and boto3 need (``env()``).
* ``DagsterCluster``: a DAGSTER_HOME whose instance storage is a Postgres database, a gRPC code server per
  definitions file (``dagster api grpc``), ``dagster-webserver`` and ``dagster-daemon run``, each its own
  process, all reading one ``workspace.yaml`` of ``grpc_server`` entries. Runs are submitted through the
  webserver's GraphQL API, as a client on another machine would.
* ``NginxProxy``: Debian's nginx in front of a webserver, configured by docs/deploy.md's blocks marked
  ``proxy`` as written: TLS with a self-signed certificate for 127.0.0.1 and basic auth.
"""

import contextlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers import REPO, flow_literal, flow_literals, free_port, wait_for

BIN = os.path.dirname(sys.executable)  # console scripts of this interpreter (a pyenv shim may pick another)
BUCKET = "mf-datastore"


def deploy(src, fixtures, out_dir, env):
    """`python FLOW dagster create OUT` for every fixture file in ``src``, four at a time, each to
    ``out_dir/<name>.py``; checks that each uploaded a code package. Returns {job name: definitions file}."""
    pending, running, jobs = list(fixtures), [], {}
    while pending or running:
        while pending and len(running) < 4:
            fixture = pending.pop(0)
            out = os.path.join(out_dir, fixture.replace("_flow.py", "") + ".py")
            proc = subprocess.Popen(
                [sys.executable, os.path.join(src, fixture), "dagster", "create", out],
                cwd=src, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            running.append((proc, out))
        proc, out = running.pop(0)
        output = proc.communicate(timeout=300)[0]
        assert proc.returncode == 0, output
        assert "Uploaded the code package" in output, output
        jobs[flow_literal(out)["job_name"]] = out
    return jobs


def deploy_together(src, fixtures, out, env):
    """`python FIRST dagster create OUT --add-flow F ...`: the flows of ``fixtures`` (in ``src``) in one file,
    each with its own code package. Returns {job name: OUT} for every job of the file."""
    argv = [sys.executable, os.path.join(src, fixtures[0]), "dagster", "create", out]
    argv += [a for fixture in fixtures[1:] for a in ("--add-flow", os.path.join(src, fixture))]
    proc = subprocess.run(argv, cwd=src, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    literals = flow_literals(out)
    assert len(literals) == len(fixtures) and all(lit.get("code_package") for lit in literals.values()), literals
    return {job: out for job in literals}


class Process:
    """A server process in its own session, its output in a log file.

    ``stop`` ends the whole process group (the server and the children it did not detach); ``kill`` signals
    the server's pid only, as a crash or an orchestrator restarting one container would.
    """

    def __init__(self, argv, log_path, env=None, cwd=None, user=None):
        self.argv = list(argv)
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, user=user,
            )
        self.pid = self.proc.pid

    def alive(self):
        return self.proc.poll() is None

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def kill(self, sig=signal.SIGKILL, timeout=60):
        """Signal the server process alone and wait for it to exit."""
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout)

    def signal_group(self, sig):
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, sig=signal.SIGTERM, grace=15):
        """End the process group: ``sig``, then SIGKILL after ``grace`` seconds."""
        for s, wait in ((sig, grace), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.pid, s)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if self.proc.poll() is None:
            self.proc.wait(10)


def _private_dir(prefix):
    """A fresh directory under the system temp dir (pytest's tmp_path is mode 0700 and root's under root,
    where the ``postgres`` user could not reach a data directory)."""
    path = tempfile.mkdtemp(prefix=prefix)
    os.chmod(path, 0o755)
    return path


def _pg_bindir():
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if os.path.exists(os.path.join(out, "initdb")):
            return out
    except (OSError, subprocess.CalledProcessError):
        pass
    versions = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: int(v) if v.isdigit() else 0)
    if versions:
        return os.path.join("/usr/lib/postgresql", versions[-1], "bin")
    pytest.fail("PostgreSQL is not installed (apt-get install -y postgresql)")


class Postgres:
    """A PostgreSQL cluster on 127.0.0.1:``port`` with superuser ``dagster`` and a random password."""

    USER = "dagster"

    def __init__(self, root=None):
        self.root = root or _private_dir("mfd-pg-")
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.password = "pg-" + secrets.token_hex(12)
        self.bindir = _pg_bindir()
        # Under root, the cluster belongs to the `postgres` system user (PostgreSQL will not run as root).
        self.os_user = "postgres" if os.geteuid() == 0 else None
        self.server = None

    def _chown(self, path):
        if self.os_user:
            shutil.chown(path, self.os_user, self.os_user)

    def init(self):
        pwfile = os.path.join(self.root, "pwfile")
        with open(pwfile, "w") as f:
            f.write(self.password + "\n")
        self._chown(self.root)
        self._chown(pwfile)
        argv = [
            os.path.join(self.bindir, "initdb"), "-D", self.data, "-U", self.USER, "--auth=scram-sha-256",
            "--pwfile=" + pwfile, "-E", "UTF8", "--no-sync", "--no-instructions",
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, user=self.os_user, cwd=self.root)
        os.unlink(pwfile)
        assert proc.returncode == 0, "initdb failed:\n%s%s" % (proc.stdout, proc.stderr)
        return self

    def start(self):
        argv = [
            os.path.join(self.bindir, "postgres"), "-D", self.data, "-p", str(self.port), "-h", "127.0.0.1",
            "-k", self.root, "-c", "fsync=off", "-c", "max_connections=300",
        ]
        self.server = Process(argv, os.path.join(self.root, "postgres.log"), cwd=self.root, user=self.os_user)
        wait_for(self._ready, 60, "PostgreSQL to accept connections (log: %s)" % self.server.log_path)
        return self

    def _ready(self):
        assert self.server.alive(), "postgres exited:\n" + self.server.log_tail()
        try:
            self.connect("postgres").close()
            return True
        except Exception:
            return False

    def connect(self, db):
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=self.USER, password=self.password, dbname=db, connect_timeout=5
        )

    def stop(self):
        """Fast shutdown (SIGINT): open sessions are cut, as when the database server restarts."""
        if self.server is not None:
            self.server.stop(signal.SIGINT)

    def restart(self):
        self.stop()
        return self.start()

    def create_database(self, name):
        conn = self.connect("postgres")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute('CREATE DATABASE "%s"' % name)
        conn.close()
        return name

    def storage_config(self, db):
        """The ``storage:`` section of a dagster.yaml on database ``db``; the password is read from the env."""
        return {
            "postgres": {
                "postgres_db": {
                    "username": self.USER,
                    "password": {"env": "DAGSTER_PG_PASSWORD"},
                    "hostname": "127.0.0.1",
                    "db_name": db,
                    "port": self.port,
                    # SQLAlchemy 2.1 made psycopg 3 the default driver; dagster-postgres ships psycopg2.
                    "scheme": "postgresql+psycopg2",
                }
            }
        }

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class S3Server:
    """moto's S3 server on 127.0.0.1:``port`` with bucket ``BUCKET``; ``env()`` points Metaflow at it."""

    def __init__(self, root=None):
        self.root = root or _private_dir("mfd-s3-")
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        # Dummy credentials, but random: tests check that they appear in no generated file or log.
        self.key_id = "AKIA" + secrets.token_hex(8).upper()
        self.secret = "s3-" + secrets.token_hex(16)
        self.server = None

    def env(self):
        return {
            "AWS_ACCESS_KEY_ID": self.key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "METAFLOW_S3_ENDPOINT_URL": self.url,
            "METAFLOW_DATASTORE_SYSROOT_S3": "s3://%s/metaflow" % BUCKET,
        }

    def start(self):
        argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.server = Process(argv, os.path.join(self.root, "moto.log"), cwd=self.root)
        wait_for(self._ready, 60, "the S3 server (log: %s)" % self.server.log_path)
        self.client().create_bucket(Bucket=BUCKET)
        return self

    def _ready(self):
        assert self.server.alive(), "moto exited:\n" + self.server.log_tail()
        try:
            with urllib.request.urlopen(self.url + "/moto-api/", timeout=2):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.url, aws_access_key_id=self.key_id, aws_secret_access_key=self.secret,
            region_name="us-east-1",
        )

    def keys(self, prefix=""):
        """Every object key under ``prefix`` in the bucket."""
        out, token = [], None
        while True:
            kw = {"Bucket": BUCKET, "Prefix": prefix}
            if token:
                kw["ContinuationToken"] = token
            page = self.client().list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return out

    def cleanup(self):
        if self.server is not None:
            self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class DagsterCluster:
    """A Dagster deployment split into processes, on a Postgres database: code servers, webserver, daemon.

    ``env`` is the environment every process gets (Metaflow and S3 settings for the code servers' run
    workers, the Postgres password for all of them). Add locations with ``add_code_server`` before
    ``start``; ``kill_code_server`` and ``start_code_server`` replace one server process on the same port.
    """

    def __init__(self, root, postgres, db, env, run_queue=None):
        self.root = root
        self.home = os.path.join(root, "dagster_home")
        os.makedirs(self.home, exist_ok=True)
        self.env = dict(env, DAGSTER_HOME=self.home, DAGSTER_PG_PASSWORD=postgres.password)
        self.env["PATH"] = BIN + os.pathsep + self.env.get("PATH", "")
        self.workspace = os.path.join(root, "workspace.yaml")
        self.locations = {}  # name -> {"defs", "port", "server"}
        self.webserver = self.daemon = None
        self._instance = None
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        config = {
            "storage": postgres.storage_config(db),
            "telemetry": {"enabled": False},
            # Daemons these flows do not use; each one polls the storage (CPU on a two-core machine).
            "auto_materialize": {"enabled": False, "use_sensors": False},
            "freshness": {"enabled": False},
        }
        if run_queue is not None:
            config["run_queue"] = run_queue
        import yaml

        with open(os.path.join(self.home, "dagster.yaml"), "w") as f:
            yaml.safe_dump(config, f)

    def _log(self, name):
        return os.path.join(self.root, name + ".log")

    def add_code_server(self, name, defs):
        self.locations[name] = {"defs": defs, "port": free_port(), "server": None}

    def _write_workspace(self):
        import yaml

        entries = [
            {"grpc_server": {"host": "127.0.0.1", "port": loc["port"], "location_name": name}}
            for name, loc in sorted(self.locations.items())
        ]
        with open(self.workspace, "w") as f:
            yaml.safe_dump({"load_from": entries}, f)

    def _start_code_server(self, name):
        loc = self.locations[name]
        argv = [
            sys.executable, "-m", "dagster", "api", "grpc", "-f", loc["defs"], "--location-name", name,
            "-h", "127.0.0.1", "-p", str(loc["port"]), "--use-python-environment-entry-point",
        ]
        loc["server"] = Process(argv, self._log("code-server-" + name), env=self.env,
                                cwd=os.path.dirname(loc["defs"]))

    def _code_server_up(self, name):
        loc = self.locations[name]
        assert loc["server"].alive(), "code server %s exited:\n%s" % (name, loc["server"].log_tail())
        argv = [sys.executable, "-m", "dagster", "api", "grpc-health-check", "-p", str(loc["port"])]
        return subprocess.run(argv, env=self.env, capture_output=True, timeout=60).returncode == 0

    def start(self):
        """Create the storage, then start the code servers, the webserver and the daemon."""
        from dagster import DagsterInstance

        # Create the schema once, before several processes race to do it.
        os.environ["DAGSTER_PG_PASSWORD"] = self.env["DAGSTER_PG_PASSWORD"]
        DagsterInstance.from_config(self.home).dispose()
        self._write_workspace()
        for name in self.locations:
            self._start_code_server(name)
        for name in self.locations:
            wait_for(lambda n=name: self._code_server_up(n), 180, "code server %s" % name, interval=1)
        self.webserver = Process(
            [sys.executable, "-m", "dagster_webserver", "-w", self.workspace, "-h", "127.0.0.1", "-p", str(self.port)],
            self._log("webserver"), env=self.env, cwd=self.root,
        )
        self.start_daemon()
        wait_for(self._webserver_up, 180, "the Dagster webserver (log: %s)" % self.webserver.log_path, interval=1)
        return self

    def _webserver_up(self):
        assert self.webserver.alive(), "webserver exited:\n" + self.webserver.log_tail()
        try:
            with urllib.request.urlopen(self.url + "/server_info", timeout=5) as resp:
                return resp.status == 200
        except (OSError, http.client.HTTPException):  # not up yet, or not HTTP: keep polling while it is alive
            return False

    def start_daemon(self, wait=True):
        self.daemon = Process([sys.executable, "-m", "dagster._daemon", "run", "-w", self.workspace],
                              self._log("daemon"), env=self.env, cwd=self.root)
        if wait:
            started = time.time()
            wait_for(lambda: self._daemon_beating(started), 180, "the daemon's heartbeat", interval=1)
        return self.daemon

    def _daemon_beating(self, since):
        assert self.daemon.alive(), "daemon exited:\n" + self.daemon.log_tail()
        with self.instance() as inst:
            beat = inst.get_daemon_heartbeats().get("SENSOR")
        return beat is not None and beat.timestamp >= since

    def kill_code_server(self, name, sig=signal.SIGKILL):
        """Signal one code server process and wait for it to exit; its run workers are not touched."""
        self.locations[name]["server"].kill(sig)

    def start_code_server(self, name):
        """Start code server ``name`` again, on its port, and wait until it answers."""
        self._start_code_server(name)
        wait_for(lambda: self._code_server_up(name), 180, "code server %s to come back" % name, interval=1)

    def instance(self):
        """The cluster's instance, for ``with``: one per cluster (opening one checks the schema, which costs
        more than the queries the tests poll with). Its storage opens a connection per query, so it rides
        out a database restart."""
        from dagster import DagsterInstance

        if self._instance is None:
            os.environ["DAGSTER_PG_PASSWORD"] = self.env["DAGSTER_PG_PASSWORD"]
            self._instance = DagsterInstance.from_config(self.home)
        return contextlib.nullcontext(self._instance)

    def graphql(self, query, variables=None, timeout=120):
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        req = urllib.request.Request(self.url + "/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            answer = json.loads(resp.read())
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    def launch(self, location, job, config=None, tags=None):
        """Submit a run through the webserver; returns its Dagster run id (the daemon dequeues it)."""
        query = """
        mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
            __typename
            ... on LaunchRunSuccess { run { runId } }
            ... on PythonError { message }
            ... on RunConfigValidationInvalid { errors { message } }
            ... on InvalidSubsetError { message }
        } }"""
        params = {
            "selector": {"repositoryLocationName": location, "repositoryName": "__repository__", "jobName": job},
            "runConfigData": config or {},
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]},
        }
        result = self.graphql(query, {"p": params})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def wait_runs(self, run_ids, timeout=600):
        """Wait until every run in ``run_ids`` has finished; returns {run id: DagsterRun}."""
        def finished():
            with self.instance() as inst:
                runs = {r: inst.get_run_by_id(r) for r in run_ids}
            return runs if all(r is not None and r.is_finished for r in runs.values()) else None

        return wait_for(finished, timeout, "runs %s to finish" % ", ".join(run_ids), interval=2)

    def explain(self, run_id, n=40):
        """The last ``n`` error-level messages of a run's event log: what an assertion should show."""
        import logging

        with self.instance() as inst:
            records = inst.all_logs(run_id)
        lines = [e.user_message for e in records if e.level >= logging.ERROR and e.user_message]
        return "run %s:\n%s" % (run_id, "\n".join(lines[-n:]))

    def logs(self):
        """The text of every server log of this cluster."""
        texts = []
        for name in os.listdir(self.root):
            if name.endswith(".log"):
                with open(os.path.join(self.root, name), errors="replace") as f:
                    texts.append(f.read())
        return "\n".join(texts)

    def stop(self):
        procs = [p for p in [self.daemon, self.webserver] + [loc["server"] for loc in self.locations.values()] if p]
        for proc in procs:  # all at once: each may take seconds to shut down
            proc.signal_group(signal.SIGTERM)
        for proc in procs:
            proc.stop(grace=5)
        if self._instance is not None:
            self._instance.dispose()


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server for the module's tests (each test creates its own database)."""
    pg = Postgres().init().start()
    try:
        yield pg
    finally:
        pg.cleanup()


@pytest.fixture(scope="module")
def s3():
    """An S3 API server on loopback with Metaflow's bucket."""
    server = S3Server().start()
    try:
        yield server
    finally:
        server.cleanup()


def doc_blocks(doc, marker):
    """The fenced blocks of docs/``doc`` after ``<!-- MARKER: KIND [ARG] -->``, dedented: [(kind, arg, text)]."""
    with open(os.path.join(REPO, "docs", doc), encoding="utf-8") as f:
        text = f.read()
    pattern = r"<!-- %s: (\S+)(?: (\S+))? -->\n[ ]*```\w*\n(.*?)[ ]*```" % re.escape(marker)
    return [(kind, arg, textwrap.dedent(body)) for kind, arg, body in re.findall(pattern, text, re.S)]


def expand(text, values):
    """``${NAME}`` replaced by ``values[NAME]``; nginx's own ``$name`` variables stay."""
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


class NginxProxy:
    """nginx on a free port, proxying to ``upstream_port`` with docs/deploy.md's ``proxy`` blocks.

    ``url`` is https on 127.0.0.1; ``cafile`` is the certificate a client must trust (``SSL_CERT_FILE``);
    ``user``/``password`` pass the basic auth.
    """

    def __init__(self, root, upstream_port):
        self.dir = _private_dir("mfd-proxy-")
        self.port = free_port()
        self.url = "https://127.0.0.1:%d" % self.port
        self.cafile = os.path.join(self.dir, "dagster.crt")
        self.user, self.password = "alice", "pw-" + secrets.token_hex(12)
        self.values = dict(PROXY_DIR=self.dir, PROXY_PORT=str(self.port), PROXY_HOST="127.0.0.1",
                           WEBSERVER_PORT=str(upstream_port))
        self.log = os.path.join(root, "nginx.log")
        self.proc = None

    def start(self):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                        "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout",
                        os.path.join(self.dir, "dagster.key"), "-out", self.cafile],
                       check=True, capture_output=True)
        env = dict(os.environ, PROXY_PASSWORD=self.password)
        for kind, arg, text in doc_blocks("deploy.md", "proxy"):
            if kind == "shell":
                subprocess.run(["bash", "-euo", "pipefail", "-c", expand(text, self.values)], env=env, check=True)
            else:
                with open(expand(arg, self.values), "w") as f:
                    f.write(expand(text, self.values))
        temp = "".join("    %s_temp_path %s/%s;\n" % (k, self.dir, k) for k in
                       ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write("%spid %s/nginx.pid;\nerror_log %s info;\nevents {}\nhttp {\n    access_log %s;\n%s"
                    "    include %s/dagster.conf;\n}\n"
                    % ("user root;\n" if os.geteuid() == 0 else "", self.dir, self.log, self.log, temp, self.dir))
        self.proc = Process(["nginx", "-p", self.dir, "-e", self.log, "-c", conf, "-g", "daemon off;"],
                            self.log)
        wait_for(self._up, 60, "nginx in front of the webserver", interval=0.5)
        return self

    def _up(self):
        assert self.proc.alive(), "nginx exited:\n%s" % self.proc.log_tail()
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self):
        if self.proc is not None:
            self.proc.stop(signal.SIGQUIT, grace=10)
        shutil.rmtree(self.dir, ignore_errors=True)
