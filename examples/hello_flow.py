"""A small flow that shows the main shapes: parameters, a foreach and a join."""

from metaflow import FlowSpec, Parameter, step


class HelloDagsterFlow(FlowSpec):
    greeting = Parameter("greeting", default="hello", help="What to say to each planet.")

    @step
    def start(self):
        self.planets = ["mercury", "venus", "earth"]
        self.next(self.greet, foreach="planets")

    @step
    def greet(self):
        self.message = "%s, %s!" % (self.greeting, self.input)
        print(self.message)
        self.next(self.join)

    @step
    def join(self, inputs):
        self.messages = [i.message for i in inputs]
        self.next(self.end)

    @step
    def end(self):
        print("\n".join(self.messages))


if __name__ == "__main__":
    HelloDagsterFlow()
