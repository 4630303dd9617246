from metaflow import FlowSpec, step


class InvalidFlow(FlowSpec):
    """Metaflow rejects this flow: step `a` has no self.next()."""

    @step
    def start(self):
        self.next(self.a)

    @step
    def a(self):
        self.x = 1

    @step
    def end(self):
        pass


if __name__ == "__main__":
    InvalidFlow()
