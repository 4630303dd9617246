"""The exceptions of the Dagster plugin, in a module of their own (as Metaflow's Airflow plugin has exception.py).

Every module of the plugin takes its exception from here, so none imports another only to raise: in particular
`dagster_deployer` (which Metaflow imports while it initializes its plugins) and `dagster_deployer_objects` do
not import each other. This module imports nothing but Metaflow's exception base class.
"""

from metaflow.exception import MetaflowException


class DagsterException(MetaflowException):
    headline = "Dagster error"


def check_supported(what, given, supported):
    """Raise DagsterException naming the options in ``given`` that are not in ``supported``."""
    unsupported = sorted(set(given) - set(supported))
    if unsupported:
        raise DagsterException(
            "%s option(s) %s not supported by Dagster deployments (supported: %s)"
            % (what, ", ".join(unsupported), ", ".join(sorted(supported)) or "none")
        )
