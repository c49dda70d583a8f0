"""Errors of the daemon itself (core has its own in core.errors).

StartupError     the daemon cannot start; the message tells the admin what to do
"""


class StartupError(Exception):
    """The daemon cannot start; the message tells the admin what to do."""
