from metaflow import FlowSpec, step


class SwitchInForeachFlow(FlowSpec):
    @step
    def start(self):
        self.xs = [1, 2, 3, 4]
        self.next(self.route, foreach="xs")

    @step
    def route(self):
        self.x = self.input
        self.kind = "even" if self.x % 2 == 0 else "odd"
        self.next({"even": self.even, "odd": self.odd}, condition="kind")

    @step
    def even(self):
        self.label = "e%d" % self.x
        self.next(self.merge)

    @step
    def odd(self):
        self.label = "o%d" % self.x
        self.next(self.odd2)

    @step
    def odd2(self):
        self.label = self.label + "!"
        self.next(self.merge)

    @step
    def merge(self):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.labels = [i.label for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.result = self.labels


if __name__ == "__main__":
    SwitchInForeachFlow()
