import os
import time

from metaflow import FlowSpec, card, current, environment, project, resources, step


@project(name="demo_proj")
class DecoratorsFlow(FlowSpec):
    """@environment, @resources, @card, @project and tags, checked from inside the tasks."""

    @environment(vars={"FROM_ENV_DECO": "it works", "WITH_QUOTES": "a \"b\" 'c'"})
    @resources(cpu=1, memory=512)
    @step
    def start(self):
        self.env_value = os.environ.get("FROM_ENV_DECO")
        self.quoted = os.environ.get("WITH_QUOTES")
        self.branch = current.branch_name
        self.project = current.project_name
        self.items = list(range(4))
        self.next(self.work, foreach="items")

    @step
    def work(self):
        self.started = time.time()
        time.sleep(1.5)
        self.ended = time.time()
        self.next(self.join)

    @step
    def join(self, inputs):
        self.spans = sorted((i.started, i.ended) for i in inputs)
        self.next(self.end)

    @card
    @step
    def end(self):
        self.tags_seen = sorted(current.tags)
        self.secret_seen = os.environ.get("METAFLOW_SERVICE_AUTH_KEY")


if __name__ == "__main__":
    DecoratorsFlow()
