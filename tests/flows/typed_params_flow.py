from metaflow import FlowSpec, JSONType, Parameter, step


class TypedParamsFlow(FlowSpec):
    """One Parameter of every type; the start step records the values and types the run saw."""

    text = Parameter("text", default="hello", help="a string")
    count = Parameter("count", default=1, type=int, help="an int")
    ratio = Parameter("ratio", default=0.5, type=float, help="a float")
    flag = Parameter("flag", default=False, type=bool, help="a bool")
    spec = Parameter("spec", default='{"k": 1}', type=JSONType, help="a JSON value")

    @step
    def start(self):
        values = [self.text, self.count, self.ratio, self.flag, self.spec]
        self.types = [type(v).__name__ for v in values]
        self.next(self.end)

    @step
    def end(self):
        self.result = "%s:%d:%s:%s:%s" % (self.text, self.count, self.ratio, self.flag, sorted(self.spec))


if __name__ == "__main__":
    TypedParamsFlow()
