from metaflow import FlowSpec, Parameter, project, schedule, step, trigger, trigger_on_finish


@project(name="etl")
@schedule(daily=True)
@trigger(event="manual.rerun")
@trigger_on_finish(flows=[
    "UpstreamA",
    "etl2.prod.UpstreamB",
    {"name": "UpstreamC", "project": "other", "project_branch": "test.x"},
])
class FinishFormsFlow(FlowSpec):
    """@trigger_on_finish in every static form, beside @schedule and @trigger: a schedule and two sensors."""

    limit = Parameter("limit", default=3, type=int)

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    FinishFormsFlow()
