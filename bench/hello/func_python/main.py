"""Entry point as Knative Functions' Python scaffolding writes it: hand ``new`` to the CloudEvents middleware.

It listens on ``LISTEN_ADDRESS`` (the benchmark sets ``127.0.0.1:<port>``).
"""

from func import new
from func_python.cloudevent import serve

if __name__ == "__main__":
    serve(new)
