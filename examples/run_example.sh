#!/usr/bin/env bash
# Install metaflow-dagster from this checkout and run examples/hello_flow.py end to end on Dagster, the way the
# README's "Use" section does: create (deploy), serve with the printed `dagster dev -w`, trigger, read back.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
python3 -m pip install -q .
work=$(mktemp -d)
export DAGSTER_HOME="$work/dagster_home" METAFLOW_DATASTORE_SYSROOT_LOCAL="$work"
export METAFLOW_USER="${METAFLOW_USER:-${USER:-example}}"
mkdir -p "$DAGSTER_HOME"
cd "$work"
python3 "$here/hello_flow.py" dagster create          # compiles, checks it loads, deploys to $DAGSTER_HOME

# Serve every deployed flow as `create` printed it (webserver, daemon, one code server), on a free port:
# the `dagster` commands find it by themselves.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
set -m  # its own process group, and SIGINT/SIGTERM not ignored as for a script's background job
dagster dev -w "$DAGSTER_HOME/metaflow/workspace.yaml" -p "$port" > "$work/dagster-dev.log" 2>&1 &
server=$!
set +m
trap 'kill -TERM -- -$server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
python3 - "$port" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 180
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:%s/server_info" % sys.argv[1], timeout=5):
            break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("dagster dev did not answer within 180 s (see dagster-dev.log)")
        time.sleep(1)
PY
python3 "$here/hello_flow.py" dagster trigger --greeting hi --wait
python3 - <<'PY'
from metaflow import Flow, namespace
namespace(None)
run = Flow("HelloDagsterFlow").latest_run
print("Metaflow run %s finished=%s successful=%s" % (run.pathspec, run.finished, run.successful))
print("messages:", run["join"].task.data.messages)
print("greet's output, as Metaflow saved it:", [t.stdout.strip() for t in run["greet"]])
assert run.successful and run["join"].task.data.messages == ["hi, mercury!", "hi, venus!", "hi, earth!"]
PY
echo "Serve it again: DAGSTER_HOME=$DAGSTER_HOME dagster dev -w $DAGSTER_HOME/metaflow/workspace.yaml"
