"""Parse raw MailDomain, Mailbox and Secret documents into the typed models.

A document is a mapping as found in a YAML file or returned by the Kubernetes API; both paths go
through the same functions, so validation is identical. Every field is checked, unknown fields are
refused, defaults are filled in (from the model classes, ``api.models``), and all problems of a
document are reported together.

One module per part of a document: ``common`` (header, metadata, Secret references, the reader of
one document), ``maildomain`` (its top level and small sections), ``relay``, ``tls``, ``dns`` and
``dns_provider``, ``pods`` and ``scheduling`` (``spec.pods``, and the operator's defaults for
it), ``mailbox`` and ``secret``.
"""

from __future__ import annotations

from mailstack.api.parse.common import MAX_NAME_LENGTH, document_ref
from mailstack.api.parse.mailbox import parse_mailbox
from mailstack.api.parse.maildomain import parse_maildomain
from mailstack.api.parse.secret import parse_secret

__all__ = ["MAX_NAME_LENGTH", "document_ref", "parse_mailbox", "parse_maildomain", "parse_secret"]
