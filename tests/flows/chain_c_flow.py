from metaflow import FlowSpec, current, step, trigger_on_finish


@trigger_on_finish(flows=["chain.user.tester.ChainAFlow",
                          {"name": "ChainBFlow", "project": "chain", "project_branch": "user.tester"}])
class ChainCFlow(FlowSpec):
    """Load: waits for both a ChainAFlow and a ChainBFlow run (no @project: names them in full)."""

    @step
    def start(self):
        self.upstreams = sorted(r.pathspec for r in current.trigger.runs)
        self.latest = current.trigger.run.pathspec
        self.total = current.trigger["ChainBFlow"].data.total
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ChainCFlow()
