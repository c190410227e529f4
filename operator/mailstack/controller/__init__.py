"""The Kubernetes operator: kopf handlers around the pure core (design §1, "appliers").

Pure decision logic lives in ``children`` (what to apply), ``status`` (conditions and status
documents) and ``plan`` (one MailDomain's inputs → desired objects and problems); the modules
that talk to the API are ``kube`` (a small async client), ``reconcile`` (one idempotent pass for
one MailDomain) and ``handlers`` (the kopf registry: thin handlers, indices, the coalescing
daemon). ``command`` is the ``mailstack operator`` sub-command.
"""
