from metaflow import FlowSpec, Parameter, schedule, step


@schedule(weekly=True)
class ScheduleWeeklyFlow(FlowSpec):
    """A scheduled flow: @schedule(weekly=True)."""

    alpha = Parameter("alpha", default=1)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        self.result = self.alpha


if __name__ == "__main__":
    ScheduleWeeklyFlow()
