from metaflow import FlowSpec, Parameter, step


class ForeachFlow(FlowSpec):
    """A foreach with a two-step body; count=0 must fail as Metaflow fails."""

    count = Parameter("count", default=12, type=int)

    @step
    def start(self):
        self.items = list(range(self.count))
        self.next(self.body1, foreach="items")

    @step
    def body1(self):
        self.sq = self.input * self.input
        self.next(self.body2)

    @step
    def body2(self):
        self.sq += 1
        self.next(self.join)

    @step
    def join(self, inputs):
        self.values = [i.sq for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.result = self.values


if __name__ == "__main__":
    ForeachFlow()
