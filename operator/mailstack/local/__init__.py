"""The local runtime behind ``mailstack up``: the rendered pods, run on this host.

Each pod gets a network namespace with its own address on a private bridge, each container a
private mount and PID namespace in which the pod's ConfigMaps, Secrets, emptyDirs and PVCs are
mounted at their mountPaths, so the daemons read exactly the bytes a cluster would mount.
"""
