from metaflow import FlowSpec, step


class SingleStepFlow(FlowSpec):
    @step
    def only(self):
        self.result = "alone"


if __name__ == "__main__":
    SingleStepFlow()
