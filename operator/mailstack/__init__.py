"""mailstack: a Kubernetes operator that turns MailDomain and Mailbox resources into a mail service.

The package is a pure core (``api``, ``material``, ``render``, ``dns``) wrapped by thin shells
(``cli``, and later the controller and the local runtime). See docs/ and the design notes.
"""

__version__ = "0.1.0"
