"""A foreach whose item 2 waits (up to a minute) for the file `release` names, after writing its pid and its
parent's (the process that runs the op) to `started`: the test kills them there."""

import os
import time

from metaflow import FlowSpec, Parameter, step


class CeleryKillFlow(FlowSpec):
    started = Parameter("started", default="")
    release = Parameter("release", default="")

    @step
    def start(self):
        self.items = list(range(3))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        if self.input == 2 and not os.path.exists(self.release):
            with open(self.started + ".tmp", "w") as f:
                f.write("%d %d" % (os.getpid(), os.getppid()))
            os.replace(self.started + ".tmp", self.started)
            deadline = time.time() + 60
            while not os.path.exists(self.release) and time.time() < deadline:
                time.sleep(0.1)
            raise RuntimeError("item 2 was not killed within a minute")
        self.double = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.doubles = sorted(i.double for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CeleryKillFlow()
