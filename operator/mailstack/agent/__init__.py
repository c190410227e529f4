"""The in-container supervisor: ``mailstack agent postfix|dovecot|rspamd``.

It prepares directories and ownership, runs the daemon in the foreground with its logs on
stdout/stderr, forwards SIGTERM for a clean stop, reloads the daemon when a mounted ConfigMap or
Secret changes (without restarting the pod), and serves the health endpoint the probes use.
"""
