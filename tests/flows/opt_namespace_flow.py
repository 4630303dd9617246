from metaflow import Flow, FlowSpec, current, get_namespace, step


class OptNamespaceFlow(FlowSpec):
    """Records the namespace client calls in a step use, and the runs of this flow visible from it."""

    @step
    def start(self):
        self.namespace_seen = get_namespace()
        self.runs_seen = sorted(run.id for run in Flow(current.flow_name))
        self.next(self.end)

    @step
    def end(self):
        self.namespace_seen_end = get_namespace()


if __name__ == "__main__":
    OptNamespaceFlow()
