from metaflow import FlowSpec, current, step, trigger_on_finish


@trigger_on_finish(flow="BurstUpFlow")
class BurstDownFlow(FlowSpec):
    """Runs once per BurstUpFlow run."""

    @step
    def start(self):
        self.upstream = current.trigger.run.pathspec
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    BurstDownFlow()
