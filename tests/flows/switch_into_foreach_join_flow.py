from metaflow import FlowSpec, Parameter, step


class SwitchIntoForeachJoinFlow(FlowSpec):
    """A switch inside a foreach whose cases go straight into the foreach's join (issue #19)."""

    kinds = Parameter("kinds", default="abbab", help="one letter per foreach item: the switch case it takes")

    @step
    def start(self):
        self.items = list(self.kinds)
        self.next(self.process_item, foreach="items")

    @step
    def process_item(self):
        self.pos = self.index
        self.item_type = self.input
        self.next({"a": self.handle_a, "b": self.handle_b}, condition="item_type")

    @step
    def handle_a(self):
        self.label = "a%d" % self.pos
        self.next(self.join)

    @step
    def handle_b(self):
        self.label = "b%d" % self.pos
        self.next(self.join)

    @step
    def join(self, inputs):
        # Metaflow's own runtime hands this join its inputs grouped by case, the cases in no fixed order.
        self.labels = [i.label for i in sorted(inputs, key=lambda i: i.pos)]
        self.next(self.end)

    @step
    def end(self):
        self.result = self.labels


if __name__ == "__main__":
    SwitchIntoForeachJoinFlow()
