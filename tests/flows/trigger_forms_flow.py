from metaflow import FlowSpec, Parameter, project, step, trigger
from metaflow.plugins.namespaced_events import namespaced_event_name


@project(name="forms")
@trigger(events=[
    {"name": "plain.event", "parameters": {"count": "n"}},
    {"name": lambda ctx: "computed.name", "parameters": ["label"]},
    {"name": namespaced_event_name("scoped")},
])
class TriggerFormsFlow(FlowSpec):
    """@trigger with a list of events, dict and list parameter mappings and a callable name."""

    count = Parameter("count", default=1, type=int)
    label = Parameter("label", default="none")

    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    TriggerFormsFlow()
