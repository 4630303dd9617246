import os
import sys

from metaflow import FlowSpec, Parameter, step


class SeamsFlow(FlowSpec):
    """A foreach over [0, 1, 2] whose item 1 fails until the file named by --marker exists. Every task prints a
    line of its own to stdout and to stderr: a run to re-execute from failure and to read the logs of."""

    marker = Parameter("marker", default="/nonexistent/marker")

    @step
    def start(self):
        print("start says out")
        self.items = [0, 1, 2]
        self.next(self.work, foreach="items")

    @step
    def work(self):
        print("work %d says out" % self.input)
        print("work %d says err" % self.input, file=sys.stderr)
        if self.input == 1 and not os.path.exists(self.marker):
            raise ValueError("item 1 needs %s" % self.marker)
        self.value = self.input * 10
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = sorted(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        print("end says out")
        self.result = self.values


if __name__ == "__main__":
    SeamsFlow()
