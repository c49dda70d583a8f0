"""Errors raised by the AMI adapter.

::

    AmiError                    base of everything below
     ├── AmiNotConnected        no logged-in link (not yet, or lost while waiting)
     ├── AmiTimeout             no Response within the time allowed
     └── AmiActionError         Asterisk answered ``Response: Error``
          └── AmiLoginRefused   the Login was answered ``Response: Error``

``AmiClient.run`` never raises these (it logs and reconnects); they reach callers
of ``send_action`` / ``send_list_action``.
"""

from __future__ import annotations


class AmiError(Exception):
    """Base class of every AMI adapter error."""


class AmiNotConnected(AmiError):
    """The AMI link is not up (or went down before the answer arrived)."""


class AmiTimeout(AmiError):
    """Asterisk did not answer an action in time."""


class AmiActionError(AmiError):
    """Asterisk answered an action with ``Response: Error``; the message is its ``Message``."""


class AmiLoginRefused(AmiActionError):
    """The Login was refused (typically ``Authentication failed``)."""
