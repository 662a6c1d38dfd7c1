"""rtml: measure what moving from batch to online ML would buy, on your own logs."""

__version__ = "0.1.0"
