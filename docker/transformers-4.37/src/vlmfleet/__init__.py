"""vlmfleet: the code that runs inside the evaluation image."""

__version__ = "0.1.0"
