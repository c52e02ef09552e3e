"""civicard: free identity cards and need-based benefits, with a log residents can verify."""

__version__ = "0.1.0"
