"""Metaflow side of metaflow-dagster: the `dagster` CLI group and the IR export."""
