from metaflow import FlowSpec, Parameter, step


class StepParamFlow(FlowSpec):
    step_to_rerun = Parameter("step-to-rerun", default="x")

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    StepParamFlow()
