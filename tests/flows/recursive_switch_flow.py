from metaflow import FlowSpec, step


class RecursiveSwitchFlow(FlowSpec):
    @step
    def start(self):
        self.n = 0
        self.next(self.loop)

    @step
    def loop(self):
        self.n += 1
        self.again = "yes" if self.n < 4 else "no"
        self.next({"yes": self.loop, "no": self.end}, condition="again")

    @step
    def end(self):
        self.result = self.n


if __name__ == "__main__":
    RecursiveSwitchFlow()
