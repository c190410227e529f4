"""The ``mailstack`` command line: one module per command, each a thin shell over the core.

``main`` builds the parser and dispatches; ``render``, ``dns``, ``operator`` and ``up`` each
register their sub-command and run it. ``mailstack agent`` is not here: it is dispatched by
``mailstack.entry`` straight to ``mailstack.agent.command`` so the agent's long-lived process
imports nothing of this package (see ``entry``). No core package imports this one.
"""
