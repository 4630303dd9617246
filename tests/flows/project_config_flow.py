from metaflow import Config, FlowSpec, Parameter, project, step


@project(name="mfd_demo")
class ProjectConfigFlow(FlowSpec):
    """A @project flow driven by a Config; its deployment is named project_branch_Flow."""

    cfg = Config("cfg", default_value={"greeting": "hi", "times": 1})
    who = Parameter("who", default="world")

    @step
    def start(self):
        self.message = " ".join([self.cfg.greeting] * self.cfg.times + [self.who])
        self.next(self.end)

    @step
    def end(self):
        pass


if __name__ == "__main__":
    ProjectConfigFlow()
