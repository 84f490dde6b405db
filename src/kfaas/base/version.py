"""The version of kfaas (the package, the images it renders, the chart's appVersion)."""

__version__ = "0.1.0"
