from metaflow import FlowSpec, Parameter, schedule, step


@schedule(daily=True)
class ScheduleDailyFlow(FlowSpec):
    """A scheduled flow: @schedule(daily=True)."""

    alpha = Parameter("alpha", default=1)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        self.result = self.alpha


if __name__ == "__main__":
    ScheduleDailyFlow()
