"""``kfaas dev``: the whole application on one machine, without Docker (see :mod:`kfaas.dev.cli`)."""
