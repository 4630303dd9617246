"""Kubernetes: every @kubernetes attribute with a Kubernetes meaning, @resources where @kubernetes gives none."""

from metaflow import FlowSpec, kubernetes, resources, step


class KubeFlow(FlowSpec):
    @resources(cpu=3, memory=6000)
    @kubernetes
    @step
    def start(self):
        self.items = [1, 2]
        self.next(self.train, foreach="items")

    @kubernetes(
        cpu=4, memory=4096, disk=10240, gpu=1, image="registry.example/flows:1", node_selector={"pool": "gpu"},
        tolerations=[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}], secrets=["aws-creds"],
        labels={"team": "ml"}, annotations={"owner": "alice"}, service_account="metaflow", namespace="flows",
        persistent_volume_claims={"datasets": "/data"}, shared_memory=512,
    )
    @step
    def train(self):
        self.score = self.input * 2
        self.next(self.join)

    @step
    def join(self, inputs):
        self.total = sum(i.score for i in inputs)
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    KubeFlow()
