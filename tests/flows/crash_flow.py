import os
import signal
import time

from metaflow import FlowSpec, step


class CrashFlow(FlowSpec):
    """One foreach task is killed (as by the OOM killer) while its siblings are still running."""

    @step
    def start(self):
        self.items = [0, 1, 2, 3]
        self.next(self.work, foreach="items")

    @step
    def work(self):
        if self.input == 2:
            time.sleep(0.5)
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(3)
        self.out = self.input * 10
        self.next(self.join)

    @step
    def join(self, inputs):
        self.outs = [i.out for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CrashFlow()
