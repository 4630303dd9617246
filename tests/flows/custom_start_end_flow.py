from metaflow import FlowSpec, step


class CustomStartEndFlow(FlowSpec):
    @step(start=True)
    def begin(self):
        self.x = 41
        self.next(self.middle)

    @step
    def middle(self):
        self.x += 1
        self.next(self.finish)

    @step(end=True)
    def finish(self):
        self.result = self.x


if __name__ == "__main__":
    CustomStartEndFlow()
