from kfaas.cli import entrypoint

entrypoint()
