from metaflow import FlowSpec, Parameter, step


class ForeachInSwitchFlow(FlowSpec):
    mode = Parameter("mode", default="many")

    @step
    def start(self):
        self.choice = self.mode
        self.next({"many": self.fan, "one": self.single}, condition="choice")

    @step
    def fan(self):
        self.xs = [1, 2, 3]
        self.next(self.work, foreach="xs")

    @step
    def work(self):
        self.y = self.input * 2
        self.next(self.gather)

    @step
    def gather(self, inputs):
        self.out = [i.y for i in inputs]
        self.next(self.merge)

    @step
    def single(self):
        self.out = [0]
        self.next(self.merge)

    @step
    def merge(self):
        self.next(self.end)

    @step
    def end(self):
        self.result = self.out


if __name__ == "__main__":
    ForeachInSwitchFlow()
