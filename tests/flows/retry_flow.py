from metaflow import FlowSpec, catch, current, retry, step


class RetryFlow(FlowSpec):
    """Steps fail on their first attempts and succeed on a retry, at every foreach level."""

    @retry(times=2, minutes_between_retries=0)
    @step
    def start(self):
        if current.retry_count < 1:
            raise RuntimeError("start fails on attempt 0")
        self.outer = [0, 1]
        self.next(self.mid, foreach="outer")

    @step
    def mid(self):
        self.inner = [0, 1]
        self.next(self.leaf, foreach="inner")

    @retry(times=3, minutes_between_retries=0)
    @step
    def leaf(self):
        if current.retry_count < 2:
            raise RuntimeError("leaf fails on attempts 0 and 1")
        self.attempt = current.retry_count
        self.next(self.join_inner)

    @step
    def join_inner(self, inputs):
        self.attempts = [i.attempt for i in inputs]
        self.next(self.join_outer)

    @step
    def join_outer(self, inputs):
        self.attempts = [a for i in inputs for a in i.attempts]
        self.next(self.risky)

    @catch(var="failure")
    @step
    def risky(self):
        raise ValueError("caught by @catch")
        self.next(self.end)

    @step
    def end(self):
        self.result = (self.attempts, str(self.failure.exception) if self.failure else None)


if __name__ == "__main__":
    RetryFlow()
