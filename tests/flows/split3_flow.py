from metaflow import FlowSpec, step


class Split3Flow(FlowSpec):
    @step
    def start(self):
        self.base = 10
        self.next(self.a, self.b, self.c)

    @step
    def a(self):
        self.v = self.base + 1
        self.next(self.join)

    @step
    def b(self):
        self.v = self.base + 2
        self.next(self.join)

    @step
    def c(self):
        self.v = self.base + 3
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = sorted(i.v for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        self.result = self.values


if __name__ == "__main__":
    Split3Flow()
