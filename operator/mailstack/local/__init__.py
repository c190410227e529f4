"""The local runtime behind ``mailstack up``: the rendered pods, run on this host.

Each pod gets a network namespace with its own address on a private bridge, each container a
private mount and PID namespace in which the pod's ConfigMaps, Secrets, emptyDirs and PVCs are
mounted at their mountPaths, so the daemons read exactly the bytes a cluster would mount.

``up`` is the command (preflight, render, watch); ``preflight`` checks the host; ``pods`` plans
pods from a render (pure); ``runtime`` runs them, with ``network``, ``volumes`` and
``processes``; ``container`` is each container's init; ``terminal`` is what the command prints.
"""
