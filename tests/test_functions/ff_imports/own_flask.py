"""Code that imports flask itself next to functions_framework: it gets the real Flask."""

import flask
import functions_framework


@functions_framework.http
def hello(request: flask.Request):
    return flask.jsonify(flask_request=isinstance(request, flask.Request), name=request.args.get("name"))


@functions_framework.cloud_event
def event(cloud_event):
    return None
