import os

from metaflow import FlowSpec, Parameter, step


class ResumeParamsForeachFlow(FlowSpec):
    """Item 1 of the foreach fails while `should_fail` is set; the tasks record the values they saw."""

    should_fail = Parameter("should_fail", default=False, type=bool, help="make item 1 fail")
    scale = Parameter("scale", default=10, type=int, help="multiplies every item")

    @step
    def start(self):
        self.items = [0, 1, 2]
        self.next(self.body, foreach="items")

    @step
    def body(self):
        self.saw = self.should_fail
        self.pid = os.getpid()
        if self.input == 1 and self.should_fail:
            raise RuntimeError("item 1 fails because should_fail is set")
        self.value = self.input * self.scale
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = [i.value for i in inputs]
        self.items_saw = [i.saw for i in inputs]
        self.join_saw = self.should_fail
        self.next(self.end)

    @step
    def end(self):
        self.end_saw = self.should_fail
        self.result = self.values


if __name__ == "__main__":
    ResumeParamsForeachFlow()
