"""ksmdiff: a formal spec and differential tests for the Linux KSM write-fault path."""

__version__ = "0.1.0"
