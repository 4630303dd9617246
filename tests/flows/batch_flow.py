"""@batch, which no maintained Dagster step executor runs."""

from metaflow import FlowSpec, batch, step


class BatchFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.end)

    @batch(cpu=2)
    @step
    def end(self):
        pass


if __name__ == "__main__":
    BatchFlow()
