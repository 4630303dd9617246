from metaflow import FlowSpec, step


class SwitchCaseIntoJoinFlow(FlowSpec):
    """Case 'b' of the switch goes straight into the foreach's join, which Metaflow's lint refuses."""

    @step
    def start(self):
        self.items = ["a", "b"]
        self.next(self.process_item, foreach="items")

    @step
    def process_item(self):
        self.item_type = self.input
        self.next({"a": self.handle_a, "b": self.join}, condition="item_type")

    @step
    def handle_a(self):
        self.next(self.join)

    @step
    def join(self, inputs):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    SwitchCaseIntoJoinFlow()
