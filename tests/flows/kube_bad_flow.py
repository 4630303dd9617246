"""@kubernetes with an attribute that means nothing to a Kubernetes Job Dagster starts (compute_pool)."""

from metaflow import FlowSpec, kubernetes, step


class KubeBadFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @kubernetes(compute_pool="gpu-pool")
    @step
    def end(self):
        pass


if __name__ == "__main__":
    KubeBadFlow()
