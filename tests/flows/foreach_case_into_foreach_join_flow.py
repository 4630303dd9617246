from metaflow import FlowSpec, Parameter, step


class ForeachCaseIntoForeachJoinFlow(FlowSpec):
    """A switch inside a foreach whose case 'f' opens a foreach of its own and whose case 'x' is one step; both
    cases end separately in the outer foreach's join."""

    kinds = Parameter("kinds", default="fxf", help="one letter per foreach item: the switch case it takes")

    @step
    def start(self):
        self.items = list(self.kinds)
        self.next(self.route, foreach="items")

    @step
    def route(self):
        self.pos = self.index
        self.kind = self.input
        self.next({"f": self.fan, "x": self.plain}, condition="kind")

    @step
    def fan(self):
        self.subs = [1, 2]
        self.next(self.body, foreach="subs")

    @step
    def body(self):
        self.v = self.pos * 10 + self.input
        self.next(self.join_subs)

    @step
    def join_subs(self, inputs):
        self.pos = inputs[0].pos
        self.label = "f%s" % [i.v for i in inputs]
        self.next(self.join)

    @step
    def plain(self):
        self.label = "x%d" % self.pos
        self.next(self.join)

    @step
    def join(self, inputs):
        self.labels = [i.label for i in sorted(inputs, key=lambda i: i.pos)]
        self.next(self.end)

    @step
    def end(self):
        self.result = self.labels


if __name__ == "__main__":
    ForeachCaseIntoForeachJoinFlow()
