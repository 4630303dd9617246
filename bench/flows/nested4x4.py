"""Benchmark flow: a foreach over 4 items, each a foreach over 4 items (16 inner tasks), trivial bodies."""
from metaflow import FlowSpec, step


class BenchNestedFlow(FlowSpec):
    @step
    def start(self):
        self.outer = list(range(4))
        self.next(self.split_inner, foreach="outer")

    @step
    def split_inner(self):
        self.i = self.input
        self.inner = list(range(4))
        self.next(self.body, foreach="inner")

    @step
    def body(self):
        self.y = self.i * 4 + self.input
        self.next(self.join_inner)

    @step
    def join_inner(self, inputs):
        self.ys = [i.y for i in inputs]
        self.next(self.join_outer)

    @step
    def join_outer(self, inputs):
        self.total = sum(sum(i.ys) for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        assert self.total == sum(range(16))


if __name__ == "__main__":
    BenchNestedFlow()
