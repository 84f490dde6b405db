"""The dev part: ``kfaas dev``, the whole application as local processes, without Docker.

- ``cli``: the command (functions as ``kfaas serve`` children, the dev broker and the gateway in-process);
- ``_supervisor``: starting, watching and restarting the function processes;
- ``smtp``: a local SMTP sink standing in for SES.

May import: the broker, the gateway, the spec and the shared base. It runs the function runtime only as
child processes, never in-process.
"""
