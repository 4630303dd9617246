"""Publishing Metaflow events into Dagster's own event log.

An event is a runless asset materialization on the asset key ``metaflow_event/<name>``; every field of
the event (Metaflow's envelope and the user's payload) is one metadata entry, so the UI shows it and the
``@trigger`` sensors of generated definitions read it back in storage-id order. No broker is involved:
SQLite on one machine, Postgres across many, whatever the Dagster instance uses.

``DagsterEvent`` has the surface of Metaflow's ``ArgoEvent``. Without a ``url`` it writes to the instance
in ``DAGSTER_HOME``; with one it posts to the webserver's ``/report_asset_materialization`` endpoint.
``python -m metaflow_dagster.events publish NAME --payload JSON [--url URL]`` (also ``metaflow-dagster
event publish``) is the command-line form.
"""

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from datetime import datetime, timezone

EVENT_ASSET_PREFIX = "metaflow_event"
VALID_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
DEPLOYED_ENV = "METAFLOW_DAGSTER_DEPLOYED"


class DagsterEventException(Exception):
    """An event could not be built or published; the message names the event."""


def envelope(name, payload):
    """Metaflow's event envelope around ``payload``: name, id, timestamp, utc_date, generated-by-metaflow."""
    now = time.time()
    return {
        "name": name,
        "id": str(uuid.uuid4()),
        "timestamp": int(now),
        "utc_date": datetime.fromtimestamp(now, timezone.utc).strftime("%Y%m%d"),
        "generated-by-metaflow": True,
        **payload,
    }


class DagsterEvent:
    """A named event, with a payload, that starts every deployed flow whose ``@trigger`` waits for it.

    Parameters
    ----------
    name : str or callable returning str
        The event name (``^[A-Za-z0-9_.-]+$``), or e.g. ``namespaced_event_name("foo")``.
    url : str, optional
        The Dagster webserver (``http://host:3000``). Without it the event is written to the instance
        in ``DAGSTER_HOME``.
    payload : dict, optional
        Fields delivered with the event; triggered flows map them to their Parameters.
    """

    def __init__(self, name, url=None, payload=None):
        if callable(name):
            name = name()
        if not isinstance(name, str) or not VALID_NAME.match(name):
            raise DagsterEventException("invalid event name %r: use letters, digits, '_', '.' and '-'" % (name,))
        self._name = name
        self._url = url
        self._payload = dict(payload or {})

    def add_to_payload(self, key, value):
        """Set payload field ``key`` to ``str(value)``, as ArgoEvent does. Returns self."""
        self._payload[key] = str(value)
        return self

    def safe_publish(self, payload=None, ignore_errors=True):
        """Publish only inside a run of a flow deployed by metaflow-dagster; a local run does nothing."""
        return self.publish(payload=payload, force=False, ignore_errors=ignore_errors)

    def publish(self, payload=None, force=True, ignore_errors=True):
        """Publish the event and return its id (None when not published or when an error was ignored)."""
        if not force and os.environ.get(DEPLOYED_ENV) != "1":
            print("Dagster event (%s) was not published: not running on Dagster." % self._name, file=sys.stderr)
            return None
        event = envelope(self._name, {**self._payload, **(payload or {})})
        try:
            if self._url:
                self._post(event)
            else:
                self._write(event)
        except Exception as e:
            msg = "Unable to publish Dagster event (%s): %s" % (self._name, e)
            if ignore_errors:
                print(msg, file=sys.stderr)
                return None
            raise DagsterEventException(msg) from None
        print("Dagster event (%s) published." % self._name, file=sys.stderr)
        return event["id"]

    def _write(self, event):
        from dagster import AssetKey, AssetMaterialization, DagsterInstance

        if not os.environ.get("DAGSTER_HOME"):
            raise DagsterEventException("DAGSTER_HOME is not set and no url was given")
        with DagsterInstance.get() as instance:
            instance.report_runless_asset_event(
                AssetMaterialization(asset_key=AssetKey([EVENT_ASSET_PREFIX, self._name]), metadata=event)
            )

    def _post(self, event):
        url = "%s/report_asset_materialization/%s/%s" % (
            self._url.rstrip("/"), EVENT_ASSET_PREFIX, urllib.parse.quote(self._name),
        )
        request = urllib.request.Request(
            url, method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"metadata": event}).encode("utf-8"),
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")
            raise DagsterEventException("%s answered %d: %s" % (url, e.code, body)) from None


def main(argv=None):
    """``publish NAME --payload JSON [--url URL]``: exit 0 on success, 2 on bad input, 1 when publishing fails."""
    parser = argparse.ArgumentParser(prog="metaflow-dagster event", description="Publish a Metaflow event to Dagster.")
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="publish event NAME")
    pub.add_argument("name")
    pub.add_argument("--payload", default="{}", help="JSON object of payload fields")
    pub.add_argument("--url", default=None, help="Dagster webserver URL (default: the instance in DAGSTER_HOME)")
    args = parser.parse_args(argv)
    try:
        payload = json.loads(args.payload)
    except ValueError as e:
        parser.error("event %s: --payload is not valid JSON: %s" % (args.name, e))
    if not isinstance(payload, dict):
        parser.error("event %s: --payload must be a JSON object, got %s" % (args.name, type(payload).__name__))
    try:
        event_id = DagsterEvent(args.name, url=args.url, payload=payload).publish(ignore_errors=False)
    except DagsterEventException as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    print(event_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
