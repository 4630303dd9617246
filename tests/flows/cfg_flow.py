import os

from metaflow import Config, FlowMutator, FlowSpec, Parameter, StepMutator, config_expr, current, project, step


def parse_kv(text):
    """A Config parser for `key=value` lines. It reads only that format: a task handed the parsed value
    as JSON to parse again would fail."""
    return dict(line.split("=", 1) for line in text.splitlines() if line.strip())


class from_settings(FlowMutator):
    """From the `settings` Config at deploy time: the default of a new Parameter, and @environment on every step."""

    def pre_mutate(self, mutable_flow):
        settings = dict(mutable_flow.configs)["settings"]
        mutable_flow.add_parameter("threshold", Parameter("threshold", type=int, default=settings.threshold))
        for _, s in mutable_flow.steps:
            s.add_decorator("environment", deco_kwargs={"vars": {"CFG_MODE": settings.mode}})


class retried(StepMutator):
    """@retry on the step, as many times as the `extra` Config says."""

    def pre_mutate(self, mutable_step):
        extra = dict(mutable_step.flow.configs)["extra"]
        mutable_step.add_decorator("retry", deco_kwargs={"times": extra.retries, "minutes_between_retries": 0})


@from_settings
@project(name=config_expr("settings.project"))
class CfgFlow(FlowSpec):
    """Configs from a default file, `--config`, `--config-value` and a default value; a parser and a plain
    Config; config_expr in @project; a FlowMutator and a StepMutator. Every step records what it saw."""

    settings = Config("settings", default="cfg_settings.json")  # relative: read where `create` runs
    extra = Config("extra", default_value={"label": "built-in", "retries": 0})
    kv = Config("kv", default_value="a=1", parser=parse_kv)
    motto = Config("motto", default_value="be kind", plain=True)

    def _seen(self):
        return {
            "settings": self.settings.to_dict(),
            "extra": self.extra.to_dict(),
            "kv": dict(self.kv),
            "motto": self.motto,
            "threshold": self.threshold,
            "mode": os.environ.get("CFG_MODE"),
            "project": current.project_name,
        }

    @step
    def start(self):
        self.seen_start = self._seen()
        self.next(self.flaky)

    @retried
    @step
    def flaky(self):
        if current.retry_count == 0:
            raise RuntimeError("the first attempt fails on purpose: the StepMutator's @retry must run it again")
        self.seen_flaky = self._seen()
        self.next(self.end)

    @step
    def end(self):
        self.seen_end = self._seen()


if __name__ == "__main__":
    CfgFlow()
