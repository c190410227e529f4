"""The antivirus of the MTA pod (``spec.spam.antivirus``): the clamd and freshclam containers
beside postfix and rspamd, and the volumes they add.

freshclam fetches the signature databases into a folder on the queue volume (so a restarted pod
does not download them again) and checks for updates 12 times a day; clamd waits for them, then
loads them and re-reads them when freshclam changed them. rspamd reaches clamd on the pod's
loopback (``layout.CLAMD_PORT``). Both run as the clamav user the image pins, with no capability.
Their config files are in the rspamd ConfigMap (``render.rspamd.CLAMAV_FILES``), so that the
MTA pod's one checksum covers them.
"""

from __future__ import annotations

from mailstack.api.pod_models import MailPods
from mailstack.kubedoc import Obj
from mailstack.render import layout
from mailstack.render.containers import config_map_volume, container, empty_dir, mount
from mailstack.render.objects import RenderOptions
from mailstack.render.pod_settings import container_resources
from mailstack.render.rspamd import CLAMAV_FILES

# The first download of the official databases (about 200 MB) and their first load take
# minutes: clamd's agent serves its health port only once clamd runs.
CLAMD_STARTUP_SECONDS = 900


def _mounts() -> list[Obj]:
    return [
        mount("clamav-config", layout.CLAMAV_CONFIG_DIR),
        mount("queue", layout.CLAMAV_DB_DIR, read_only=False, sub_path="clamav-db"),
        mount("clamav-run", layout.CLAMAV_RUN_DIR, read_only=False),
        mount("tmp", "/tmp", read_only=False),
    ]


def clamav_containers(options: RenderOptions, settings: MailPods) -> list[Obj]:
    """The clamd and freshclam containers of the MTA pod."""
    run_as = (layout.CLAMAV_UID, layout.CLAMAV_GID)
    clamd = container(
        "clamd",
        options,
        [],
        _mounts(),
        container_resources(settings, "clamd"),
        [],
        run_as=run_as,
    )
    clamd["startupProbe"]["failureThreshold"] = (
        CLAMD_STARTUP_SECONDS // clamd["startupProbe"]["periodSeconds"]
    )
    freshclam = container(
        "freshclam",
        options,
        [],
        _mounts(),
        container_resources(settings, "freshclam"),
        [],
        run_as=run_as,
    )
    return [clamd, freshclam]


def clamav_volumes(rspamd_config_map: str) -> list[Obj]:
    """The volumes the two containers add to the MTA pod (the queue volume is there already)."""
    return [
        config_map_volume("clamav-config", rspamd_config_map, list(CLAMAV_FILES)),
        empty_dir("clamav-run", memory=True),
    ]
