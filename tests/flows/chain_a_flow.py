from metaflow import FlowSpec, Parameter, project, step


@project(name="chain")
class ChainAFlow(FlowSpec):
    """Extract: the head of a three-flow chain; its end task emits metaflow.chain.<branch>.ChainAFlow.end."""

    seed = Parameter("seed", default=1, type=int)

    @step
    def start(self):
        self.rows = [self.seed * 10 + i for i in range(3)]
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ChainAFlow()
