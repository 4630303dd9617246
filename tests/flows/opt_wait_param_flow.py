from metaflow import FlowSpec, Parameter, step


class WaitParamFlow(FlowSpec):
    wait = Parameter("wait", default=1, type=int)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    WaitParamFlow()
