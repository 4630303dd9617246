"""Publishing Metaflow events into Dagster's own event log.

An event is a runless asset materialization on the asset key ``metaflow_event/<name>``; every field of
the event (Metaflow's envelope and the user's payload) is one metadata entry, so the UI shows it and the
``@trigger`` sensors of generated definitions read it back in storage-id order. No broker is involved:
SQLite on one machine, Postgres across many, whatever the Dagster instance uses.

``DagsterEvent`` has the surface of Metaflow's ``ArgoEvent``. Without a ``url`` it writes to the instance
in ``DAGSTER_HOME``; with one it posts to the webserver's ``/report_asset_materialization`` endpoint.
``python -m metaflow_dagster.events publish NAME --payload JSON | --payload-file FILE [--url URL]`` (also
``metaflow-dagster event publish``) is the command-line form. Every form refuses, before anything is
written, a payload that is not JSON or is larger than ``MAX_PAYLOAD_BYTES``.

The asset key prefix, the size limit and the signature are the runtime's contract
(``metaflow_dagster.runtime.contract``, standard library only); Dagster is imported only to publish, so a
flow that imports ``DagsterEvent`` does not pay for it until it publishes.

Behind an authenticating reverse proxy, ``access_token`` (sent as ``Authorization: Bearer``, as ArgoEvent
does) or ``headers`` authenticate the POST. For ``@trigger(options={"secret_env": NAME})`` the publisher
signs the event with ``secret`` (the key in NAME): the sensor skips events whose signature does not match.
"""

import argparse
import base64
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

from metaflow_dagster.runtime.contract import EVENT_ASSET_PREFIX, MAX_PAYLOAD_BYTES, SIGNATURE_FIELD, event_signature  # noqa: E501

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
        The Dagster webserver (``http://host:3000``), or the reverse proxy in front of it. Without it the
        event is written to the instance in ``DAGSTER_HOME``.
    payload : dict, optional
        Fields delivered with the event; triggered flows map them to their Parameters.
    access_token : str, optional
        Sent as ``Authorization: Bearer <token>`` with the POST to ``url``.
    headers : dict, optional
        More HTTP headers for the POST (``{"Authorization": "Basic ..."}`` for a basic-auth proxy).
    secret : str, optional
        Signs the event (field ``signature``) for flows whose ``@trigger`` names a ``secret_env``.
    """

    def __init__(self, name, url=None, payload=None, access_token=None, headers=None, secret=None):
        if callable(name):
            name = name()
        if not isinstance(name, str) or not VALID_NAME.match(name):
            raise DagsterEventException("invalid event name %r: use letters, digits, '_', '.' and '-'" % (name,))
        self._name = name
        self._url = url
        self._payload = dict(payload or {})
        self._headers = dict(headers or {})
        if access_token:
            self._headers["Authorization"] = "Bearer %s" % access_token
        self._secret = secret

    def add_to_payload(self, key, value):
        """Set payload field ``key`` to ``str(value)``, as ArgoEvent does. Returns self."""
        self._payload[key] = str(value)
        return self

    def safe_publish(self, payload=None, ignore_errors=True):
        """Publish only inside a run of a flow deployed by metaflow-dagster; a local run does nothing."""
        return self.publish(payload=payload, force=False, ignore_errors=ignore_errors)

    def publish(self, payload=None, force=True, ignore_errors=True):
        """Publish the event and return its id (None when not published or when an error was ignored).

        ``ignore_errors`` is about delivery (an unreachable webserver or instance), as for ArgoEvent; a payload
        that no sensor could read (not JSON, larger than MAX_PAYLOAD_BYTES) raises DagsterEventException.
        """
        if not force and os.environ.get(DEPLOYED_ENV) != "1":
            print("Dagster event (%s) was not published: not running on Dagster." % self._name, file=sys.stderr)
            return None
        event = envelope(self._name, {**self._payload, **(payload or {})})
        if self._secret:
            event[SIGNATURE_FIELD] = event_signature(event, self._secret)
        check_payload(self._name, event)  # bad input is an error whatever ignore_errors says
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
        from dagster import DagsterInstance

        from metaflow_dagster.runtime.sensors import publish_event

        if not os.environ.get("DAGSTER_HOME"):
            raise DagsterEventException("DAGSTER_HOME is not set and no url was given")
        with DagsterInstance.get() as instance:
            publish_event(instance, self._name, event)

    def _post(self, event):
        url = "%s/report_asset_materialization/%s/%s" % (
            self._url.rstrip("/"), EVENT_ASSET_PREFIX, urllib.parse.quote(self._name),
        )
        request = urllib.request.Request(
            url, method="POST", headers={**self._headers, "Content-Type": "application/json"},
            data=json.dumps({"metadata": event}).encode("utf-8"),
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")
            raise DagsterEventException("%s answered %d: %s" % (url, e.code, body[:300].strip())) from None


def check_payload(name, fields):
    """Raise DagsterEventException when event ``name``'s ``fields`` are not a JSON object of at most
    MAX_PAYLOAD_BYTES (the sensors skip such events; here the publisher hears why)."""
    for key, value in fields.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise DagsterEventException(
                "event %s: payload field %r is not JSON (%s: %s); give strings, numbers, booleans, null, lists or "
                "objects of them" % (name, key, type(value).__name__, e)) from None
    size = len(json.dumps(fields).encode("utf-8"))
    if size > MAX_PAYLOAD_BYTES:
        raise DagsterEventException("event %s: payload of %d bytes is larger than the %d bytes an event may carry "
                                    "(MAX_PAYLOAD_BYTES)" % (name, size, MAX_PAYLOAD_BYTES))


def _read_payload(parser, args):
    """The payload object of the command line: --payload JSON, or --payload-file F ('-': standard input)."""
    if args.payload is not None and args.payload_file is not None:
        parser.error("event %s: give --payload or --payload-file, not both" % args.name)
    text = args.payload if args.payload is not None else "{}"
    where = "--payload"
    if args.payload_file is not None:
        where = "--payload-file %s" % args.payload_file
        try:
            if args.payload_file == "-":
                text = sys.stdin.read()
            else:
                with open(args.payload_file, encoding="utf-8") as f:
                    text = f.read()
        except OSError as e:
            parser.error("event %s: cannot read %s: %s" % (args.name, where, e.strerror or e))
    try:
        payload = json.loads(text)
    except ValueError as e:
        parser.error("event %s: %s is not valid JSON: %s" % (args.name, where, e))
    if not isinstance(payload, dict):
        parser.error("event %s: %s must be a JSON object, got %s" % (args.name, where, type(payload).__name__))
    return payload


def _from_env(parser, event, option, name):
    """The value of the environment variable ``name`` that ``option`` names (never a secret on the command line)."""
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        parser.error("event %s: %s names %s, which is not set" % (event, option, name))
    return value


def main(argv=None):
    """``publish NAME --payload JSON | --payload-file F [--url URL] [auth]``: exit 0 on success, 2 on bad input
    (also a payload too large or not JSON), 1 when publishing fails.

    Credentials come from environment variables named on the command line, so they never show in ``ps``.
    """
    parser = argparse.ArgumentParser(prog="metaflow-dagster event", description="Publish a Metaflow event to Dagster.")
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="publish event NAME")
    pub.add_argument("name")
    pub.add_argument("--payload", default=None, help="JSON object of payload fields")
    pub.add_argument("--payload-file", default=None, metavar="FILE",
                     help="read the JSON object of payload fields from FILE ('-': standard input)")
    pub.add_argument("--url", default=None, help="Dagster webserver URL (default: the instance in DAGSTER_HOME)")
    pub.add_argument("--secret-env", metavar="VAR", help="sign the event with the key in $VAR (@trigger secret_env)")
    pub.add_argument("--access-token-env", metavar="VAR", help="send 'Authorization: Bearer $VAR' to --url")
    pub.add_argument("--basic-auth-env", metavar="VAR", help="send $VAR ('user:password') as basic auth to --url")
    args = parser.parse_args(argv)
    payload = _read_payload(parser, args)
    secret = _from_env(parser, args.name, "--secret-env", args.secret_env)
    token = _from_env(parser, args.name, "--access-token-env", args.access_token_env)
    basic = _from_env(parser, args.name, "--basic-auth-env", args.basic_auth_env)
    if (token or basic) and not args.url:
        parser.error("event %s: --access-token-env and --basic-auth-env go with --url" % args.name)
    headers = {"Authorization": "Basic " + base64.b64encode(basic.encode("utf-8")).decode("ascii")} if basic else None
    try:
        check_payload(args.name, envelope(args.name, payload))
    except DagsterEventException as e:
        parser.error(str(e))
    try:
        event = DagsterEvent(args.name, url=args.url, payload=payload, access_token=token, headers=headers,
                             secret=secret)
        event_id = event.publish(ignore_errors=False)
    except DagsterEventException as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    print(event_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
