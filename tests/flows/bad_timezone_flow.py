from metaflow import FlowSpec, schedule, step


@schedule(daily=True, timezone="Mars/Olympus_Mons")
class MarsFlow(FlowSpec):
    """Compiles, but its definitions do not load: Dagster refuses the schedule's timezone."""

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    MarsFlow()
