"""A foreach of 20 for Celery workers; the test routes its end step to a queue only one worker serves."""

from metaflow import FlowSpec, step


class CeleryFlow(FlowSpec):
    @step
    def start(self):
        self.items = list(range(20))
        self.next(self.body, foreach="items")

    @step
    def body(self):
        print("square of %d" % self.input)
        self.square = self.input * self.input
        self.next(self.join)

    @step
    def join(self, inputs):
        self.squares = sorted(i.square for i in inputs)
        self.total = sum(self.squares)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    CeleryFlow()
