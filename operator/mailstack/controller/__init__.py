"""The Kubernetes operator: kopf handlers and informers around the pure core (design §1).

Pure decisions: ``children`` (what to apply), ``status`` (conditions and status documents),
``plan`` (one MailDomain's documents → desired objects, problems and statuses), ``index`` (the
in-memory view of Mailboxes and MailDomains), ``memory`` (coalescing flags and caches).
Talking to the API: ``kube`` (a small async client: server-side apply, status patches, list and
watch), ``informer`` (list + watch into memory), ``reconcile`` (one idempotent pass for one
MailDomain). ``handlers`` wires it to kopf; ``command`` is ``mailstack operator``.
"""
