from metaflow import FlowSpec, step


class FailingFlow(FlowSpec):
    @step
    def start(self):
        self.next(self.boom)

    @step
    def boom(self):
        raise ValueError("kaboom from step boom")
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FailingFlow()
