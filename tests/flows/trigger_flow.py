from metaflow import FlowSpec, JSONType, Parameter, current, step, trigger


@trigger(event="data.ready")
class TriggeredFlow(FlowSpec):
    """Runs for every `data.ready` event; payload fields of the same name become Parameters."""

    alpha = Parameter("alpha", default=0.5, type=float)
    who = Parameter("who", required=True)
    cfg = Parameter("cfg", type=JSONType, default='{"k": 0}')

    @step
    def start(self):
        self.start_trigger = (current.trigger.event.name, current.trigger.event.id)
        self.next(self.end)

    @step
    def end(self):
        self.end_trigger = [(e.name, e.id, e.type) for e in current.trigger.events]
        self.values = (self.alpha, self.who, self.cfg)


if __name__ == "__main__":
    TriggeredFlow()
