from metaflow import FlowSpec, step, trigger_on_finish


def upstreams(ctx):
    return ["UpstreamA", {"name": "UpstreamB", "project": "p", "project_branch": "prod.blue"}]


@trigger_on_finish(flows=upstreams)
class FinishCallableFlow(FlowSpec):
    """@trigger_on_finish whose flows come from a callable, resolved at `create`."""

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FinishCallableFlow()
