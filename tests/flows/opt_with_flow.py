import os

from metaflow import FlowSpec, current, step


class OptWithFlow(FlowSpec):
    """Every step fails its first attempt and records WITH_VAR: it succeeds only if `--with retry` and
    `--with environment` both reach every step."""

    def _attempt(self):
        if current.retry_count == 0:
            raise RuntimeError("the first attempt of %s fails on purpose" % current.step_name)
        return os.environ.get("WITH_VAR")

    @step
    def start(self):
        self.var_start = self._attempt()
        self.next(self.middle)

    @step
    def middle(self):
        self.var_middle = self._attempt()
        self.next(self.end)

    @step
    def end(self):
        self.var_end = self._attempt()


if __name__ == "__main__":
    OptWithFlow()
