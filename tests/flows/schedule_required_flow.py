from metaflow import FlowSpec, Parameter, schedule, step


@schedule(daily=True)
class ScheduleRequiredFlow(FlowSpec):
    """Rejected: a scheduled run could not set `who`."""

    who = Parameter("who", required=True)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ScheduleRequiredFlow()
