"""The one error type of regseg_ros."""


class RegsegError(Exception):
    """
    Raised for every user-facing failure: bad weights, bad input, bad configuration.

    Messages name the observed value, the rule it broke and the fix.
    """


class RegsegWarning(UserWarning):
    """Warned when regseg_ros goes on with something the user should know about."""
