from metaflow import FlowSpec, step


class Foreach3Flow(FlowSpec):
    """Three foreach levels, 2x2x2."""

    @step
    def start(self):
        self.l1 = [0, 1]
        self.next(self.s1, foreach="l1")

    @step
    def s1(self):
        self.p = [self.input]
        self.l2 = [0, 1]
        self.next(self.s2, foreach="l2")

    @step
    def s2(self):
        self.p = self.p + [self.input]
        self.l3 = [0, 1]
        self.next(self.s3, foreach="l3")

    @step
    def s3(self):
        self.p = self.p + [self.input]
        self.next(self.j3)

    @step
    def j3(self, inputs):
        self.ps = [i.p for i in inputs]
        self.next(self.j2)

    @step
    def j2(self, inputs):
        self.ps = [p for i in inputs for p in i.ps]
        self.next(self.j1)

    @step
    def j1(self, inputs):
        self.ps = [p for i in inputs for p in i.ps]
        self.next(self.end)

    @step
    def end(self):
        self.result = ["".join(map(str, p)) for p in self.ps]


if __name__ == "__main__":
    Foreach3Flow()
