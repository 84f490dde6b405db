"""A functions-framework http function in its classic (Flask) form, unchanged."""

import flask
import functions_framework


@functions_framework.http
def greet(request: flask.Request):
    payload = request.get_json(silent=True) or {}
    name = payload.get("name") or request.args.get("name", "world")
    if name == "teapot":
        return "short and stout", 418
    return flask.jsonify(hello=name, path=request.path)
