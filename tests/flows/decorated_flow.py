from metaflow import FlowSpec, JSONType, Parameter, environment, resources, retry, step, timeout


class DecoratedFlow(FlowSpec):
    """Step decorators and every Parameter type, with values that need escaping."""

    ratio = Parameter("ratio", default=1e-07, type=float, help='tiny "ratio" \\ with ünïcode')
    count = Parameter("count", default=3, type=int)
    flag = Parameter("flag", default=False, type=bool)
    spec = Parameter("spec", default='{"a": [1, 2], "b": {"c": null}}', type=JSONType)
    my_name = Parameter("my-name", required=True, help="line one\nline two\ttab")

    @retry(times=2, minutes_between_retries=0)
    @resources(cpu=2, memory=1000)
    @environment(vars={"GREETING": 'say "hi"\n', "EMPTY": ""})
    @timeout(seconds=30)
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        self.result = (self.ratio, self.count, self.flag, self.spec, self.my_name)


if __name__ == "__main__":
    DecoratedFlow()
