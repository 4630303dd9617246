import os
import sys

from metaflow import FlowSpec, Parameter, step


class ResumeParamsFlow(FlowSpec):
    """`process` fails while `should_fail` is set; every step records the Parameter values it saw, `process`
    also how its interpreter was started (`-c` under metaflow-dagster's BOOT for a new interpreter)."""

    should_fail = Parameter("should_fail", default=False, type=bool, help="make `process` fail")
    label = Parameter("label", required=True, help="required: a resume keeps the origin's value")
    count = Parameter("count", default=1, type=int, help="an int, to check that bad values are refused")

    @step
    def start(self):
        self.start_saw = self.should_fail
        self.pid_start = os.getpid()
        self.next(self.prepare)

    @step
    def prepare(self):
        self.prepare_saw = self.should_fail
        self.pid_prepare = os.getpid()
        self.next(self.process)

    @step
    def process(self):
        self.process_saw = self.should_fail
        self.started_as = getattr(sys, "orig_argv", [])[1:2]
        if self.should_fail:
            raise RuntimeError("process fails because should_fail is set")
        self.next(self.end)

    @step
    def end(self):
        self.end_saw = self.should_fail
        self.result = "%s:%s:%d" % (self.label, self.should_fail, self.count)


if __name__ == "__main__":
    ResumeParamsFlow()
