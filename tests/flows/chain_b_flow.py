from metaflow import FlowSpec, current, project, step, trigger_on_finish


@project(name="chain")
@trigger_on_finish(flow="ChainAFlow")
class ChainBFlow(FlowSpec):
    """Transform: runs once per ChainAFlow run of its own project and branch, reading that run's data."""

    @step
    def start(self):
        upstream = current.trigger.run
        self.upstream = upstream.pathspec
        self.total = sum(upstream.data.rows)
        self.next(self.done)

    @step
    def done(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ChainBFlow()
