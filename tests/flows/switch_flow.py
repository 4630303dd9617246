from metaflow import FlowSpec, Parameter, step


class SwitchFlow(FlowSpec):
    """A switch with a single-step case, a multi-step case and a case that skips to the merge."""

    mode = Parameter("mode", default="long")

    @step
    def start(self):
        self.trail = ["start"]
        self.choice = self.mode
        self.next({"short": self.short, "long": self.long1, "skip": self.merge}, condition="choice")

    @step
    def short(self):
        self.trail = self.trail + ["short"]
        self.next(self.merge)

    @step
    def long1(self):
        self.trail = self.trail + ["long1"]
        self.next(self.long2)

    @step
    def long2(self):
        self.trail = self.trail + ["long2"]
        self.next(self.merge)

    @step
    def merge(self):
        self.trail = self.trail + ["merge"]
        self.next(self.end)

    @step
    def end(self):
        self.result = self.trail + ["end"]


if __name__ == "__main__":
    SwitchFlow()
