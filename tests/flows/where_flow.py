from metaflow import FlowSpec, environment, step


def command_line():
    with open("/proc/self/cmdline", "rb") as f:
        return [a.decode() for a in f.read().split(b"\0") if a]


class WhereFlow(FlowSpec):
    """Each step records the command line of the process it ran in: a fork of the run worker or a new
    interpreter (`python where_flow.py ... step NAME ...`)."""

    @step
    def start(self):
        self.argv = command_line()
        self.next(self.own_settings)

    @environment(vars={"METAFLOW_WHERE_FLOW_SETTING": "1"})
    @step
    def own_settings(self):
        self.argv = command_line()
        self.next(self.end)

    @step
    def end(self):
        self.argv = command_line()


if __name__ == "__main__":
    WhereFlow()
