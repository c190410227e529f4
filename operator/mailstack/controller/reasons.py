"""The reasons the operator writes into conditions and Events, spelled once.

A table: users, alerts and scripts match on these words, so each is a constant here and a
string literal nowhere else (cert-manager keeps its policy reasons the same way). A DNS
provider's failure carries its own reason (``DnsError.reason``: ``DNSCredentialsRefused``
and the like), and cert-manager's Ready reason is passed on behind ``CERT_MANAGER_PREFIX``.
"""

from __future__ import annotations

# --- shared by several condition types -----------------------------------------------------

READY = "Ready"  # Ready, WorkloadsReady and a Mailbox's Ready are True
VALID = "Valid"  # the spec is valid
INVALID_SPEC = "InvalidSpec"  # a problem in the spec (Valid=False, and Rendered=False for it)
NOT_RENDERED = "NotRendered"  # nothing rendered yet to look at
PENDING = "Pending"  # waiting for another controller (or the first apply)

# --- MailDomain: Valid ---------------------------------------------------------------------

DOMAIN_NOT_GRANTED = "DomainNotGranted"  # no MailDomainPolicy grants the namespace spec.domain
SERVICE_NOT_ALLOWED = "ServiceNotAllowed"  # spec.service is not what the policy's grant allows
ISSUER_NOT_ALLOWED = "IssuerNotAllowed"  # a cert-manager issuer the grant does not list
HOST_NOT_ALLOWED = "HostNotAllowed"  # a relay or DNS server host is internal, not granted
OUTBOUND_NOT_ALLOWED = "OutboundAddressNotAllowed"  # binds to an address no grant gives it
DOMAIN_CONFLICT = "DomainConflict"  # an older MailDomain (any namespace) serves spec.domain
LIMIT_EXCEEDED = "LimitExceeded"  # over a namespace limit of a MailDomainPolicy (Mailboxes too)
PROOF_PENDING = "ProofPending"  # the grant requires a DNS proof of control not seen yet
SERVER_PENDING = "ServerPending"  # spec.serverRef: no pass of that MailServer served it (yet)
SERVED_BY_SERVER = "ServedByServer"  # spec.serverRef: the MailServer's last pass served it
SERVER_NOT_ALLOWED = "ServerNotAllowed"  # spec.serverRef names a server no grant lists
INVALID_SECRET = "InvalidSecret"  # a referenced or material Secret cannot be used
NAME_TAKEN = "NameTaken"  # an object of a child's name exists and is not this MailDomain's

# --- MailDomain: Rendered ------------------------------------------------------------------

APPLIED = "Applied"
RENDER_FAILED = "RenderFailed"
APPLY_FAILED = "ApplyFailed"

# --- MailDomain: WorkloadsReady ------------------------------------------------------------

ROLLING_OUT = "RollingOut"
NOT_READY = "NotReady"
POD_REJECTED = "PodRejected"  # the API server refused a pod: the StatefulSet's FailedCreate Event

# --- MailDomain: CertificateReady ----------------------------------------------------------

ISSUED = "Issued"  # by the internal CA
CERT_MANAGER_PREFIX = "CertManager"  # + the reason (or status) of the Certificate's Ready
CERTIFICATE_MISSING = "Missing"
ACME_NOT_AVAILABLE = "ACMENotAvailable"

# --- MailDomain: DNSReady ------------------------------------------------------------------

NOT_CONFIGURED = "NotConfigured"  # provider manual: only the user publishes (never blocks Ready)
PUBLISHED = "Published"
DNS_CONFLICT = "DNSConflict"  # a record is held by someone else
EXTERNAL_DNS_NOT_INSTALLED = "ExternalDNSNotInstalled"
DNS_ENDPOINT_REFUSED = "DNSEndpointRefused"
WAITING_FOR_EXTERNAL_DNS = "WaitingForExternalDNS"
ACCEPTED_BY_EXTERNAL_DNS = "AcceptedByExternalDNS"

# --- MailDomain: OutboundIdentityVerified ----------------------------------------------------

OUTBOUND_VERIFIED = "Verified"  # every address: FCrDNS to the HELO name, and SPF passes
OUTBOUND_NOT_CONFIGURED = "NotConfigured"  # spec.outbound.addresses is empty
OUTBOUND_THROUGH_RELAY = "ThroughRelay"  # spec.relay: the relay's identity, not ours
OUTBOUND_CHECKING = "Checking"  # the lookups have not answered yet
PTR_MISMATCH = "PTRMismatch"  # no PTR of an address names the HELO name
FORWARD_MISMATCH = "ForwardMismatch"  # the HELO name's A/AAAA lack the address
SPF_NOT_PASSING = "SPFNotPassing"  # the domain's SPF does not pass for an address
LOOKUP_FAILED = "LookupFailed"  # a lookup failed (timeout, SERVFAIL)
# --- MailDomain: ClientAddressesMasked (never counts for Ready) ------------------------------

MASKED_CLIENTS_SEEN = "MaskedClientsSeen"  # public clients seen with the cluster's own addresses
NO_MASKED_CLIENTS = "NoMaskedClients"
# NOT_CONFIGURED: the operator has no clusterNetworks (no tripwire)

# --- Mailbox -------------------------------------------------------------------------------

PASSWORD_UNAVAILABLE = "PasswordUnavailable"  # mail is accepted, login is not
ADDRESS_CONFLICT = "AddressConflict"
NO_MAIL_DOMAIN = "NoMailDomain"
MAIL_DOMAIN_INVALID = "MailDomainInvalid"
MAIL_DOMAIN_NOT_RENDERED = "MailDomainNotRendered"

# --- Events (beyond the condition reasons they repeat) -------------------------------------

RECREATED = "Recreated"  # a StatefulSet, for a field it cannot change
RESTORED = "Restored"  # children changed or deleted outside the operator
FINALIZED = "Finalized"
INVALID_PREFIX = "Invalid"  # + a Mailbox's Valid reason

# --- Why a pass failed and is retried (``ReconcileError.reason``, the errors metric's label) ---

READ_FAILED = "ReadFailed"  # reading Secrets or children
APPLY_FAILED = "ApplyFailed"  # the API server refused a child
STATUS_WRITE_FAILED = "StatusWriteFailed"
FINALIZE_FAILED = "FinalizeFailed"
UNEXPECTED = "Unexpected"  # any other exception: a fault of ours
