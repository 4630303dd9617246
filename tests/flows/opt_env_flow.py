import os

from metaflow import FlowSpec, step


class OptEnvFlow(FlowSpec):
    """Records which of the test's variables its tasks see (create --forward-env)."""

    NAMES = ("MFD_FORWARDED", "MFD_PREFIX_ONE", "MFD_PREFIX_TWO", "MFD_NOT_FORWARDED")

    @step
    def start(self):
        self.seen = {name: os.environ.get(name) for name in self.NAMES}
        self.next(self.end)

    @step
    def end(self):
        self.seen_end = {name: os.environ.get(name) for name in self.NAMES}


if __name__ == "__main__":
    OptEnvFlow()
