"""functions-framework's error handlers: an exception answered by the handler registered for its class."""

import functions_framework


class Teapot(Exception):
    pass


@functions_framework.errorhandler(ZeroDivisionError)
def handle_zero_division(e):
    return "I'm a teapot", 418


@functions_framework.errorhandler(LookupError)
def handle_lookup(e):
    return {"missing": str(e)}, 404


def function(request):
    if request.args.get("key"):
        return {"value": {}[request.args["key"]]}
    1 / 0  # noqa: B018
    return "Success", 200


@functions_framework.cloud_event
def on_event(cloud_event):
    if cloud_event["type"] == "lookup":
        raise KeyError(cloud_event["subject"])
    if cloud_event["type"] == "teapot":
        raise Teapot()
    1 / 0  # noqa: B018


class Box:
    def __init__(self, value):
        self.value = value

    @staticmethod
    def from_dict(obj):
        return Box(obj["value"])


@functions_framework.typed
def typed(x: Box):
    return {"inverse": 1 / x.value}
