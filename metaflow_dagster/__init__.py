"""metaflow-dagster: compile Metaflow flows into Dagster definitions.

The C extension ``metaflow_dagster._core`` checks a flow's IR and writes the definitions file; the runtime
module ``metaflow_dagster.runtime`` is pasted into every file it writes.
"""

__version__ = "0.1.0"
