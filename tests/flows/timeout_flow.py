import time

from metaflow import FlowSpec, Parameter, step, timeout


class TimeoutFlow(FlowSpec):
    """`slow` sleeps `seconds`; its @timeout is 4 seconds."""

    seconds = Parameter("seconds", default=120, type=int)

    @step
    def start(self):
        self.next(self.slow)

    @timeout(seconds=4)
    @step
    def slow(self):
        time.sleep(self.seconds)
        self.next(self.end)

    @step
    def end(self):
        self.result = "done"


if __name__ == "__main__":
    TimeoutFlow()
