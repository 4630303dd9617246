import os

from metaflow import FlowSpec, Parameter, step


class ResumeLinearFlow(FlowSpec):
    """`b` fails until the file named by `marker` exists."""

    marker = Parameter("marker", default="/nonexistent")

    @step
    def start(self):
        self.pid_start = os.getpid()
        self.next(self.a)

    @step
    def a(self):
        self.pid_a = os.getpid()
        self.next(self.b)

    @step
    def b(self):
        if not os.path.exists(self.marker):
            raise RuntimeError("b fails until %s exists" % self.marker)
        self.next(self.end)

    @step
    def end(self):
        self.result = "resumed"


if __name__ == "__main__":
    ResumeLinearFlow()
