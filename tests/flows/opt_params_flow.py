import os

from metaflow import FlowSpec, IncludeFile, JSONType, Parameter, step


class OptParamsFlow(FlowSpec):
    """Parameters of every kind; each step records the values and their types as it saw them."""

    text = Parameter("text", default="hello", help="a string")
    count = Parameter("count", default=1, type=int, help="an int")
    ratio = Parameter("ratio", default=0.5, type=float, help="a float")
    flag = Parameter("flag", default=False, type=bool, help="a bool")
    spec = Parameter("spec", default='{"k": 1}', type=JSONType, help="a JSON value")
    needed = Parameter("needed", type=int, required=True, help="required, no default")
    max_items = Parameter("max-items", default=3, type=int, help="a name with a dash")
    retry_count = Parameter("retry_count", default=2, type=int, help="named like a step option")
    notes = IncludeFile("notes", default=os.path.join(os.path.dirname(__file__), "opt_notes.txt"))

    def _record(self):
        values = [self.text, self.count, self.ratio, self.flag, self.spec, self.needed, self.max_items,
                  self.retry_count, self.notes]
        return [values, [type(v).__name__ for v in values]]

    @step
    def start(self):
        self.seen_start = self._record()
        self.next(self.end)

    @step
    def end(self):
        self.seen_end = self._record()


if __name__ == "__main__":
    OptParamsFlow()
