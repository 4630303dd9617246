from metaflow import FlowSpec, Parameter, schedule, step


@schedule(cron="30 12 ? * MON-FRI *", timezone="Europe/Paris")
class ScheduleCronFlow(FlowSpec):
    """A scheduled flow: @schedule(cron="30 12 ? * MON-FRI *", timezone="Europe/Paris")."""

    alpha = Parameter("alpha", default=1)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        self.result = self.alpha


if __name__ == "__main__":
    ScheduleCronFlow()
