from metaflow import FlowSpec, Parameter, current, step, trigger


@trigger(event="signed.ready", options={"secret_env": "MFD_EVENT_SECRET"})
class SignedTriggerFlow(FlowSpec):
    """Runs only for `signed.ready` events signed with the key in MFD_EVENT_SECRET (only the name is deployed)."""

    alpha = Parameter("alpha", default=0.5, type=float)
    who = Parameter("who", required=True)

    @step
    def start(self):
        self.event_id = current.trigger.event.id
        self.next(self.end)

    @step
    def end(self):
        self.values = (self.alpha, self.who)


if __name__ == "__main__":
    SignedTriggerFlow()
