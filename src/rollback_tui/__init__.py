"""rollback-tui: a terminal cockpit for rollback rehearsals and real rollbacks."""

__version__ = "0.1.0"
