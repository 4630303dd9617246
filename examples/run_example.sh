#!/usr/bin/env bash
# Install metaflow-dagster from this checkout and run examples/hello_flow.py end to end on Dagster.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
python3 -m pip install -q .
work=$(mktemp -d)
export DAGSTER_HOME="$work/dagster_home" METAFLOW_DATASTORE_SYSROOT_LOCAL="$work"
export METAFLOW_USER="${METAFLOW_USER:-${USER:-example}}"
mkdir -p "$DAGSTER_HOME"
cd "$work"
python3 "$here/hello_flow.py" dagster create hello_dagster.py
echo '{"ops": {"start": {"config": {"greeting": "hi"}}}}' > run_config.json
python3 -m dagster job execute -f hello_dagster.py -j HelloDagsterFlow -c run_config.json
python3 - <<'PY'
from metaflow import Flow, namespace
namespace(None)
run = Flow("HelloDagsterFlow").latest_run
print("Metaflow run %s finished=%s successful=%s" % (run.pathspec, run.finished, run.successful))
print("messages:", run["join"].task.data.messages)
assert run.successful and run["join"].task.data.messages == ["hi, mercury!", "hi, venus!", "hi, earth!"]
PY
echo "Dagster instance with the run's history: $DAGSTER_HOME (serve it: DAGSTER_HOME=$DAGSTER_HOME dagster dev -f $work/hello_dagster.py)"
