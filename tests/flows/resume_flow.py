import os

from metaflow import FlowSpec, Parameter, current, step


class ResumeFlow(FlowSpec):
    """Fails in the foreach item 1 and in step `after` until the file named by `marker` exists."""

    marker = Parameter("marker", default="/nonexistent")

    @step
    def start(self):
        self.items = [0, 1, 2]
        self.next(self.body, foreach="items")

    @step
    def body(self):
        if self.input == 1 and not os.path.exists(self.marker):
            raise RuntimeError("item 1 fails until %s exists" % self.marker)
        self.value = self.input * 10
        self.pid = os.getpid()
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = [i.value for i in inputs]
        self.next(self.after)

    @step
    def after(self):
        self.ran_in = current.run_id
        self.next(self.end)

    @step
    def end(self):
        self.result = self.values


if __name__ == "__main__":
    ResumeFlow()
