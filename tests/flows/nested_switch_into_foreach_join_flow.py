from metaflow import FlowSpec, Parameter, step


class NestedSwitchIntoForeachJoinFlow(FlowSpec):
    """An outer foreach over groups, an inner foreach over their items, and a switch whose cases go straight
    into the inner foreach's join. One group mixes the cases, the others take only one."""

    groups = Parameter("groups", default="ab,bb,aa", help="comma-separated groups, one letter per item")

    @step
    def start(self):
        self.group_list = self.groups.split(",")
        self.next(self.group, foreach="group_list")

    @step
    def group(self):
        self.gpos = self.index
        self.items = list(self.input)
        self.next(self.process_item, foreach="items")

    @step
    def process_item(self):
        self.pos = self.index
        self.item_type = self.input
        self.next({"a": self.handle_a, "b": self.handle_b}, condition="item_type")

    @step
    def handle_a(self):
        self.label = "a%d.%d" % (self.gpos, self.pos)
        self.next(self.join_items)

    @step
    def handle_b(self):
        self.label = "b%d.%d" % (self.gpos, self.pos)
        self.next(self.join_items)

    @step
    def join_items(self, inputs):
        self.gpos = inputs[0].gpos
        self.labels = [i.label for i in sorted(inputs, key=lambda i: i.pos)]
        self.next(self.join_groups)

    @step
    def join_groups(self, inputs):
        self.all = [i.labels for i in sorted(inputs, key=lambda i: i.gpos)]
        self.next(self.end)

    @step
    def end(self):
        self.result = self.all


if __name__ == "__main__":
    NestedSwitchIntoForeachJoinFlow()
