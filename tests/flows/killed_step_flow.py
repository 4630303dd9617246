import os
import time

from metaflow import FlowSpec, current, retry, step


class KilledStepFlow(FlowSpec):
    """Step `work` prints its process id and waits on its first attempt, for a test to SIGKILL it; the
    retry (Metaflow attempt 1) finishes at once."""

    @step
    def start(self):
        self.next(self.work)

    @retry(times=1, minutes_between_retries=0)
    @step
    def work(self):
        self.attempt = current.retry_count
        print("work pid %d attempt %d" % (os.getpid(), current.retry_count), flush=True)
        if current.retry_count == 0:
            time.sleep(600)
        self.next(self.end)

    @step
    def end(self):
        self.result = self.attempt


if __name__ == "__main__":
    KilledStepFlow()
