"""mailstack: a Kubernetes operator that turns MailDomain and Mailbox resources into a mail service.

The package is a pure core (``api``, ``material``, ``render``, ``dns``) wrapped by thin shells
(``commands``, ``controller``, ``local``, ``agent``). docs/architecture.md describes the layers.
"""

__version__ = "0.1.0"

# The mail image's own version (Postfix, Dovecot, rspamd and the agent): released apart from the
# operator, and raised only when what runs in the mail pods changes, so that an operator upgrade
# alone does not roll every mail pod of the cluster. The chart's default (Chart.yaml annotation
# mailstack.dev/mail-image-version) is this value; a test keeps them equal.
MAIL_IMAGE_VERSION = "0.3.0"
