import os
import time

from metaflow import FlowSpec, Parameter, step


class SleepFlow(FlowSpec):
    """A long run: step `nap` writes its process id to `pidfile`, then sleeps `seconds`."""

    seconds = Parameter("seconds", default=600, type=int)
    pidfile = Parameter("pidfile", default="")

    @step
    def start(self):
        self.next(self.nap)

    @step
    def nap(self):
        if self.pidfile:
            with open(self.pidfile, "w") as f:
                f.write(str(os.getpid()))
        time.sleep(self.seconds)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SleepFlow()
