from metaflow import FlowSpec, Parameter, step


class WideFlow(FlowSpec):
    """A foreach of --width items, to check the limit on splits (Metaflow's --max-num-splits, 100 by default)."""

    width = Parameter("width", default=3, type=int)

    @step
    def start(self):
        self.items = list(range(self.width))
        self.next(self.item, foreach="items")

    @step
    def item(self):
        self.value = self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.value for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        self.result = self.total


if __name__ == "__main__":
    WideFlow()
