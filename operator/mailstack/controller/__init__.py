"""The Kubernetes operator: kopf handlers and informers around the pure core.

Pure decisions: ``plan`` (one MailDomain's documents → desired objects and problems),
``children`` (what to apply), ``conditions`` (each condition, with the words of ``reasons``),
``status`` (status documents and their transitions), ``events`` (which Events to post),
``documents`` (what is read from raw documents), ``index`` (the in-memory view of Mailboxes and
MailDomains), ``memory`` (coalescing flags and caches). Talking to the API: ``kube`` (a small
async client: server-side apply, status patches, list and watch), ``informer`` (list + watch
into memory), ``reconcile`` (one idempotent pass for one MailDomain), ``status_writer``,
``dns_publisher`` (the records at the DNS provider), ``finalize`` (before a MailDomain goes).
``handlers`` wires it to kopf, ``login`` gets the credentials, ``serve`` runs the whole
operator (what ``mailstack operator`` starts). See ``docs/architecture.md``.
"""
