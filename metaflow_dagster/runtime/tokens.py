"""The op outputs (tokens) of a job whose ops share no disk, kept in the flow's Metaflow datastore.

Dagster hands an op's output to the ops after it through an IO manager. Its default one writes files under
the instance's storage directory, which Celery workers, Kubernetes pods and Docker containers on other hosts
do not share; Dagster's distributed executors refuse in-memory outputs for the same reason. A token is a small
dict naming a Metaflow task, so ``TokenStore`` keeps each one as JSON in the one place every worker already
reaches: the flow's Metaflow datastore (S3, Azure, GCS, or the local one when the workers share a disk), under
``<Flow>/_dagster/<Dagster run id>/<step key>/<output>[/<mapping key>].json``, beside the flow's artifacts.
Keys follow Dagster's identifiers, so a re-execution reads its parent run's tokens as with Dagster's own.
"""

import io
import json

from dagster import IOManager, IOManagerDefinition

from .tasks import _datastore_storage


class TokenStore(IOManager):
    """An IO manager that stores tokens as JSON in the flow's Metaflow datastore (``flow`` needs ``name`` and
    ``settings``)."""

    def __init__(self, flow):
        self._flow = {"name": flow["name"], "settings": flow["settings"]}
        self._storage = None

    def _path(self, identifier):
        return "%s/_dagster/%s.json" % (self._flow["name"], "/".join(identifier))

    def _store(self):
        if self._storage is None:
            self._storage = _datastore_storage(self._flow)
        return self._storage

    def handle_output(self, context, obj):
        data = json.dumps(obj, sort_keys=True).encode("utf-8")
        self._store().save_bytes([(self._path(context.get_identifier()), io.BytesIO(data))], overwrite=True)

    def load_input(self, context):
        path = self._path(context.upstream_output.get_identifier())
        with self._store().load_bytes([path]) as loaded:
            for _, local, _ in loaded:
                if local is None:
                    raise FileNotFoundError("the output %s of this run is not in the Metaflow datastore %s"
                                            % (path, self._flow["settings"]["datastore_root"]))
                with open(local, "rb") as f:
                    return json.loads(f.read())
        raise FileNotFoundError(path)


def token_io_manager(flow):
    """The job's ``io_manager`` resource: a TokenStore of ``flow`` (the FLOW literal)."""
    return IOManagerDefinition.hardcoded_io_manager(TokenStore(flow), "Tokens in the flow's Metaflow datastore")
