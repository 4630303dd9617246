from metaflow import FlowSpec, Parameter, step


class SwitchInSplitFlow(FlowSpec):
    """A static split whose branch 'route' holds a switch whose two cases end in the split's join separately."""

    mode = Parameter("mode", default="b", help="the case 'route' takes: b or c")

    @step
    def start(self):
        self.next(self.route, self.other)

    @step
    def route(self):
        self.pick = self.mode
        self.next({"b": self.case_b, "c": self.case_c}, condition="pick")

    @step
    def case_b(self):
        self.v = "b"
        self.next(self.join)

    @step
    def case_c(self):
        self.v = "c"
        self.next(self.join)

    @step
    def other(self):
        self.v = "other"
        self.next(self.join)

    @step
    def join(self, inputs):
        self.vs = sorted(i.v for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        self.result = self.vs


if __name__ == "__main__":
    SwitchInSplitFlow()
