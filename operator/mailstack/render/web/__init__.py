"""The documents a mail domain serves over HTTPS: the MTA-STS policy and the mail clients'
self-configuration (Thunderbird autoconfig, Microsoft Autodiscover, an Apple profile), each a pure
function of the assembled MailService, and ``site``, which names them (hosts and paths)."""
