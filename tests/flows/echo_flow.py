import sys

from metaflow import FlowSpec, step


class EchoFlow(FlowSpec):
    """Prints to stdout and stderr in every step: the lines must reach the run's captured logs."""

    @step
    def start(self):
        print("start says out")
        print("start says err", file=sys.stderr)
        self.next(self.end)

    @step
    def end(self):
        print("end says out")


if __name__ == "__main__":
    EchoFlow()
