import time

from metaflow import FlowSpec, Parameter, step


class SleepyFlow(FlowSpec):
    """A run that takes `seconds` in one step: for workflow timeouts and terminate."""

    seconds = Parameter("seconds", default=120, type=int)

    @step
    def start(self):
        self.next(self.nap)

    @step
    def nap(self):
        time.sleep(self.seconds)
        self.next(self.end)

    @step
    def end(self):
        self.result = "awake"


if __name__ == "__main__":
    SleepyFlow()
