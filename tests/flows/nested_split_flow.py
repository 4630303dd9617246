from metaflow import FlowSpec, step


class NestedSplitFlow(FlowSpec):
    """Nested static splits, and a split inside one branch of another."""

    @step
    def start(self):
        self.next(self.a, self.b)

    @step
    def a(self):
        self.next(self.a1, self.a2)

    @step
    def a1(self):
        self.v = ["a1"]
        self.next(self.join_a)

    @step
    def a2(self):
        self.v = ["a2"]
        self.next(self.join_a)

    @step
    def join_a(self, inputs):
        self.v = sorted(sum((i.v for i in inputs), []))
        self.next(self.join)

    @step
    def b(self):
        self.v = ["b"]
        self.next(self.join)

    @step
    def join(self, inputs):
        self.v = sorted(sum((i.v for i in inputs), []))
        self.next(self.end)

    @step
    def end(self):
        self.result = self.v


if __name__ == "__main__":
    NestedSplitFlow()
