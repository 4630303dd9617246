import os

from metaflow import FlowSpec, Parameter, step


class FlakyFlow(FlowSpec):
    """Step b fails until the file named by --marker exists: a run to re-execute from failure."""

    marker = Parameter("marker", required=True)

    @step
    def start(self):
        self.x = 1
        self.next(self.b)

    @step
    def b(self):
        if not os.path.exists(self.marker):
            raise RuntimeError("b fails until %s exists" % self.marker)
        self.y = self.x + 1
        self.next(self.end)

    @step
    def end(self):
        self.z = self.y + 1


if __name__ == "__main__":
    FlakyFlow()
