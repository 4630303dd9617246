from metaflow import FlowSpec, Parameter, step


class LinearFlow(FlowSpec):
    """Five steps in a line; each adds to a running total."""

    alpha = Parameter("alpha", default=0.5, type=float, help="a float")
    greeting = Parameter("greeting", default="world", help="who to greet")

    @step
    def start(self):
        self.total = 1
        self.next(self.a)

    @step
    def a(self):
        self.total += 1
        self.next(self.b)

    @step
    def b(self):
        self.total += 1
        print("step b says hello to", self.greeting)
        self.next(self.c)

    @step
    def c(self):
        self.total += 1
        self.next(self.end)

    @step
    def end(self):
        self.result = "%s:%d:%s" % (self.greeting, self.total, self.alpha)


if __name__ == "__main__":
    LinearFlow()
