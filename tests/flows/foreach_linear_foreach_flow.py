from metaflow import FlowSpec, step


class ForeachLinearForeachFlow(FlowSpec):
    @step
    def start(self):
        self.xs = [1, 2, 3]
        self.next(self.f1, foreach="xs")

    @step
    def f1(self):
        self.y = self.input * 10
        self.next(self.j1)

    @step
    def j1(self, inputs):
        self.ys = [i.y for i in inputs]
        self.next(self.mid)

    @step
    def mid(self):
        self.next(self.f2, foreach="ys")

    @step
    def f2(self):
        self.z = self.input + 1
        self.next(self.j2)

    @step
    def j2(self, inputs):
        self.zs = [i.z for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        self.result = self.zs


if __name__ == "__main__":
    ForeachLinearForeachFlow()
