from metaflow import FlowSpec, step


class BurstUpFlow(FlowSpec):
    """The cheapest real upstream: one step, whose task is both start and end (it emits .only and .end)."""

    @step
    def only(self):
        self.done = True


if __name__ == "__main__":
    BurstUpFlow()
