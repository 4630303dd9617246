"""Benchmark flow: a foreach over 200 items, trivial bodies."""
from metaflow import FlowSpec, step


class BenchForeach200Flow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(200))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        self.y = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.y for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        assert self.total == 39800


if __name__ == "__main__":
    BenchForeach200Flow()
