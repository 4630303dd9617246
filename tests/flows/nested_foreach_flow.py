from metaflow import FlowSpec, step


class NestedForeachFlow(FlowSpec):
    """Foreach 2x2 inside which a linear step follows the inner join."""

    @step
    def start(self):
        self.outer = ["x", "y"]
        self.next(self.mid, foreach="outer")

    @step
    def mid(self):
        self.o = self.input
        self.inner = [1, 2]
        self.next(self.leaf, foreach="inner")

    @step
    def leaf(self):
        self.v = "%s%d" % (self.o, self.input)
        self.next(self.join_inner)

    @step
    def join_inner(self, inputs):
        self.vs = [i.v for i in inputs]
        self.next(self.after_inner)

    @step
    def after_inner(self):
        self.vs = self.vs + ["done-" + self.vs[0][0]]
        self.next(self.join_outer)

    @step
    def join_outer(self, inputs):
        self.all = [i.vs for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.result = self.all


if __name__ == "__main__":
    NestedForeachFlow()
