from metaflow import FlowSpec, pypi, step


class OptPypiFlow(FlowSpec):
    """A @pypi step: its environment needs micromamba and conda-forge, which `create` refuses."""

    @pypi(packages={"six": "1.16.0"})
    @step
    def start(self):
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    OptPypiFlow()
