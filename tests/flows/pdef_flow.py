import json
import os

from metaflow import Config, FlowSpec, IncludeFile, JSONType, Parameter, config_expr, step


def param_default(ctx):
    return ctx.configs.cfg.base + 1


def spec_default(ctx):
    # A JSONType default function returns JSON text: `run` refuses any other value ("Expected a string").
    return json.dumps({"tags": ["x", "y"], "base": ctx.configs.cfg.base, "by": ctx.parameter_name})


def flag_default(ctx):
    return ctx.configs.cfg.base > 40


def ratio_default(ctx):
    return ctx.configs.cfg.base / 2


def label_default(ctx):
    return "%s-%s" % (ctx.flow_name, ctx.parameter_name)


def notes_default(ctx):
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "opt_notes.txt")


class PDefFlow(FlowSpec):
    """Parameter defaults computed at deploy time: functions of the context and config_expr, of every type."""

    cfg = Config("cfg", default_value={"base": 41})
    a = Parameter("a", default=param_default, type=int, help="a function of the config")
    b = Parameter("b", default=config_expr("cfg.base"), type=int, help="a config_expr")
    spec = Parameter("spec", default=spec_default, type=JSONType, help="JSON from a function")
    flag = Parameter("flag", default=flag_default, type=bool)
    ratio = Parameter("ratio", default=ratio_default, type=float)
    label = Parameter("label", default=label_default)
    notes = IncludeFile("notes", default=notes_default)

    @step
    def start(self):
        self.values = [self.a, self.b, self.spec, self.flag, self.ratio, self.label, self.notes]
        self.types = [type(v).__name__ for v in self.values]
        self.next(self.end)

    @step
    def end(self):
        self.total = self.a + self.b


if __name__ == "__main__":
    PDefFlow()
