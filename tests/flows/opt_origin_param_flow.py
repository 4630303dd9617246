from metaflow import FlowSpec, Parameter, step


class OriginParamFlow(FlowSpec):
    origin_run_id = Parameter("origin_run_id", default="x")

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    OriginParamFlow()
