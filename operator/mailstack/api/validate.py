"""Validators for every string a user controls, before it can reach a config file or a record.

Each validator returns the normalised value or raises ``FieldError`` with a message that says what
is expected. They are deliberately strict: the rendered files (main.cf, master.cf, dovecot.conf,
passwd-file, Postfix maps, zone files) are line- and whitespace-oriented, so anything outside a
small character set is refused here rather than escaped later.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata

from mailstack.api.errors import FieldError

_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# Our own local parts (mailboxes, aliases): lowercase dot-atoms from a conservative set. '+' is the
# recipient delimiter, so it is not allowed in a mailbox name.
_LOCAL_PART = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")
# External addresses (forwarding and alias targets, an external postmaster): an RFC 5321 dot-atom,
# any case, without the atext characters that some config format gives a meaning: '#' (Dovecot
# comment), '$' (Postfix expansion), '%' (Dovecot variable), '{' and '}' (sections). No quoted
# strings, whitespace, commas (the Postfix map separator), '"', '\\', '(', ')', '<', '>', ';', ':'.
_EXTERNAL_LOCAL_PART = re.compile(r"^[A-Za-z0-9!&'*+/=?^_`|~-]+(\.[A-Za-z0-9!&'*+/=?^_`|~-]+)*$")
_K8S_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_K8S_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_SIZE = re.compile(r"^([0-9]+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
_SIZE_FACTORS = {
    None: 1,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
}
_SELECTOR = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_HASH_SCHEME = re.compile(r"^\{([A-Z0-9.-]+)\}(.+)$", re.DOTALL)
# Schemes Dovecot 2.3 verifies that are not plain text; '{PLAIN}' and friends are refused on
# purpose: a stored cleartext password is what this operator exists to avoid.
ACCEPTED_HASH_SCHEMES = frozenset(
    {
        "BLF-CRYPT",
        "SHA512-CRYPT",
        "SHA256-CRYPT",
        "ARGON2I",
        "ARGON2ID",
        "PBKDF2",
        "SSHA512",
        "SSHA256",
        "SSHA",
        "CRYPT",
        "MD5-CRYPT",
    }
)
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
MAX_SIEVE_BYTES = 64 * 1024


def domain_name(value: object) -> str:
    """A fully qualified, lowercase, ASCII (punycode) domain name with at least two labels."""
    if not isinstance(value, str):
        raise FieldError(f"expected a domain name (string), got {type(value).__name__}")
    if value == "":
        raise FieldError("expected a domain name, got an empty string")
    if not value.isascii():
        try:
            hint = value.encode("idna").decode("ascii")
            suggestion = f"; write it in punycode, e.g. {hint!r}"
        except UnicodeError:
            suggestion = "; write it in punycode (xn--...)"
        raise FieldError(f"{value!r} is an internationalised name{suggestion}")
    if value != value.lower():
        raise FieldError(f"{value!r} must be lowercase ({value.lower()!r})")
    if value.endswith("."):
        raise FieldError(f"{value!r}: write the name without the trailing dot")
    if len(value) > 253:
        raise FieldError(f"{value[:40]!r}... is longer than 253 characters")
    labels = value.split(".")
    if len(labels) < 2:
        raise FieldError(f"{value!r} is not fully qualified (expected e.g. example.com)")
    for label in labels:
        if not _LABEL.fullmatch(label):
            raise FieldError(
                f"{value!r}: label {label!r} must be 1-63 characters of a-z, 0-9 and '-', "
                "not starting or ending with '-'"
            )
    if labels[-1].isdigit():
        raise FieldError(f"{value!r}: the top-level label cannot be numeric")
    return value


def local_part(value: object) -> str:
    """A local part of one of our own addresses: lowercase a-z 0-9 . _ -, at most 64 characters."""
    if not isinstance(value, str):
        raise FieldError(f"expected a local part (string), got {type(value).__name__}")
    if value == "":
        raise FieldError("expected a local part, got an empty string")
    if len(value) > 64:
        raise FieldError(f"local part {value[:20]!r}... is longer than 64 characters")
    if value != value.lower() and _LOCAL_PART.fullmatch(value.lower()):
        raise FieldError(f"local part {value!r} must be lowercase ({value.lower()!r})")
    if ".." in value:
        raise FieldError(f"local part {value!r} contains '..'")
    if not _LOCAL_PART.fullmatch(value):
        raise FieldError(
            f"local part {value!r} may only contain a-z, 0-9, '.', '_' and '-' "
            "(no spaces, quotes, '+' or control characters; not starting or ending with '.')"
        )
    return value


def own_address(value: object) -> tuple[str, str]:
    """An address on a domain we serve: returns (local part, domain)."""
    if not isinstance(value, str):
        raise FieldError(f"expected an email address (string), got {type(value).__name__}")
    if value.count("@") != 1:
        raise FieldError(f"{value!r} is not an address of the form local@domain")
    local, domain = value.split("@")
    try:
        local_part(local)
        domain_name(domain)
    except FieldError as err:
        raise FieldError(f"address {value!r}: {err.message}") from None
    return local, domain


def external_address(value: object) -> str:
    """Any deliverable address (forwarding targets): an RFC 5321 dot-atom @ a domain name."""
    if not isinstance(value, str):
        raise FieldError(f"expected an email address (string), got {type(value).__name__}")
    if value.count("@") != 1:
        raise FieldError(f"{value!r} is not an address of the form local@domain")
    local, domain = value.split("@")
    if not local or len(local) > 64 or not _EXTERNAL_LOCAL_PART.fullmatch(local):
        raise FieldError(
            f"address {value!r}: the local part must be 1-64 characters of an unquoted "
            "RFC 5321 dot-atom (no spaces, quotes, commas, control characters or # $ % {{ }})"
        )
    try:
        domain_name(domain)
    except FieldError as err:
        raise FieldError(f"address {value!r}: {err.message}") from None
    return value


def size_bytes(value: object) -> int:
    """A Kubernetes-style quantity of bytes: 1048576, 500k, 25Mi, 10G, 2Gi."""
    if isinstance(value, bool):
        raise FieldError(f"expected a size such as 25Mi, got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise FieldError(f"size must not be negative, got {value}")
        return value
    if not isinstance(value, str):
        raise FieldError(f"expected a size such as 25Mi, got {type(value).__name__}")
    match = _SIZE.fullmatch(value)
    if not match:
        raise FieldError(
            f"{value!r} is not a size; write a number with an optional unit "
            "k, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024), e.g. 25Mi"
        )
    return int(match.group(1)) * _SIZE_FACTORS[match.group(2)]


def kubernetes_name(value: object, max_length: int = 63) -> str:
    """A DNS-1035 label (RFC 1035 label, lowercase), as Service names require."""
    if not isinstance(value, str) or not value:
        raise FieldError("expected a non-empty name")
    if len(value) > max_length:
        raise FieldError(f"name {value!r} is longer than {max_length} characters")
    if not _K8S_NAME.fullmatch(value):
        raise FieldError(
            f"name {value!r} must start with a-z, contain only a-z, 0-9 and '-', "
            "and end with a letter or digit"
        )
    return value


def kubernetes_subdomain(value: object) -> str:
    """A DNS-1123 subdomain: the names of Secrets, ConfigMaps, Issuers."""
    if not isinstance(value, str) or not value:
        raise FieldError("expected a non-empty name")
    if len(value) > 253 or not _K8S_SUBDOMAIN.fullmatch(value):
        raise FieldError(
            f"name {value!r} must be a DNS-1123 subdomain (a-z, 0-9, '-', '.'; at most 253)"
        )
    return value


def secret_key(value: object) -> str:
    """A key inside a Secret's data."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > 253
        or not _SECRET_KEY.fullmatch(value)
    ):
        raise FieldError(f"{value!r} is not a valid Secret key (a-z, A-Z, 0-9, '-', '_', '.')")
    return value


def dkim_selector(value: object) -> str:
    """A DKIM selector: one DNS label."""
    if not isinstance(value, str) or not _SELECTOR.fullmatch(value):
        raise FieldError(
            f"selector {value!r} must be one DNS label: a-z, 0-9 and '-', at most 63 characters"
        )
    return value


def ip_address(value: object, version: int) -> str:
    """An IPv4 or IPv6 address in its canonical text form."""
    if not isinstance(value, str):
        raise FieldError(f"expected an IPv{version} address (string)")
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        raise FieldError(f"{value!r} is not an IPv{version} address") from None
    if parsed.version != version:
        raise FieldError(f"{value!r} is not an IPv{version} address")
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.scope_id:
        raise FieldError(f"{value!r}: a zone index (%...) is not allowed")
    return str(parsed)


def any_ip_address(value: object) -> str:
    """An IPv4 or IPv6 address."""
    if not isinstance(value, str):
        raise FieldError("expected an IP address (string)")
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        raise FieldError(f"{value!r} is not an IP address") from None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.scope_id:
        raise FieldError(f"{value!r}: a zone index (%...) is not allowed")
    return str(parsed)


def has_control_characters(text: str) -> bool:
    """True for C0/C1 control characters and Unicode line/paragraph separators (U+2028/9)."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


def password(value: str) -> str:
    """A password value from a Secret: plain text (hashed by us) or an ``{SCHEME}`` hash.

    Plain passwords may contain any printable character, ':' included: only their hash reaches
    the passwd-file. Hashes are copied verbatim, so they must not contain ':' or whitespace.
    """
    if has_control_characters(value):
        raise FieldError("the password contains a newline or another control character")
    scheme = _HASH_SCHEME.fullmatch(value)
    if scheme:
        name, rest = scheme.group(1), scheme.group(2)
        if name in ("PLAIN", "CLEARTEXT", "CLEAR", "PLAIN-TRUNC"):
            raise FieldError(
                f"{{{name}}} stores the password in clear; give the plain password instead "
                "(it is hashed with bcrypt) or a hashed {SCHEME} value"
            )
        if name not in ACCEPTED_HASH_SCHEMES:
            raise FieldError(
                f"unknown password scheme {{{name}}}; accepted: "
                + ", ".join(sorted(ACCEPTED_HASH_SCHEMES))
            )
        if ":" in rest or not all(33 <= ord(c) <= 126 for c in rest):
            raise FieldError(f"the {{{name}}} hash must be printable ASCII without ':' or blanks")
        return value
    if len(value) < MIN_PASSWORD_LENGTH:
        raise FieldError(f"the password is shorter than {MIN_PASSWORD_LENGTH} characters")
    if len(value) > MAX_PASSWORD_LENGTH:
        raise FieldError(f"the password is longer than {MAX_PASSWORD_LENGTH} characters")
    return value


def is_hashed_password(value: str) -> bool:
    """True when the value is an ``{SCHEME}hash`` rather than a plain password."""
    match = _HASH_SCHEME.fullmatch(value)
    return bool(match) and match is not None and match.group(1) in ACCEPTED_HASH_SCHEMES


def sieve_script(value: object) -> str:
    """A Sieve script: text, at most 64 KiB, no NUL; its syntax is checked by Dovecot's sievec."""
    if not isinstance(value, str):
        raise FieldError("expected a Sieve script (string)")
    if "\x00" in value:
        raise FieldError("the Sieve script contains a NUL character")
    if len(value.encode()) > MAX_SIEVE_BYTES:
        raise FieldError(f"the Sieve script is larger than {MAX_SIEVE_BYTES} bytes")
    if not value.strip():
        raise FieldError("the Sieve script is empty (omit the field instead)")
    return value


def display_name(value: object) -> str:
    """A human name: printable, single line, at most 128 characters."""
    if not isinstance(value, str):
        raise FieldError("expected a display name (string)")
    if any(ord(c) < 32 or ord(c) == 127 for c in value) or len(value) > 128:
        raise FieldError("the display name must be one line of at most 128 printable characters")
    return value


def http_url(value: object) -> str:
    """An http(s) URL without whitespace or quotes, whose host is a plain name or address:
    no user part and no %-escapes before the path (urllib would decode them: another host)."""
    if not isinstance(value, str) or not re.fullmatch(
        r"^https?://[A-Za-z0-9._~:/?#\[\]@!$&*+,;=%-]+$", value
    ):
        raise FieldError(f"{value!r} is not an http(s) URL")
    authority = re.split(r"[/?#]", value.split("://", 1)[1], maxsplit=1)[0]
    host = re.sub(r":[0-9]{1,5}$", "", authority)
    try:
        any_ip_address(host[1:-1]) if host.startswith("[") else any_ip_address(host)
    except FieldError:
        try:
            domain_name(host)
        except FieldError:
            raise FieldError(f"{value!r}: the host must be a domain name or an address") from None
    return value


def domain_name_or_label(value: object) -> str:
    """A TSIG key name: one label or a domain name."""
    if isinstance(value, str) and _LABEL.fullmatch(value):
        return value
    return domain_name(value)


def hex_id(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"^[0-9a-f]{32}$", value):
        raise FieldError(f"{value!r} is not a 32-character lowercase hex id")
    return value


def route53_zone_id(value: object) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"^Z[A-Z0-9]{1,31}$", value):
        raise FieldError(f"{value!r} is not a Route 53 hosted zone id (Z...)")
    return value


def report_address(value: object) -> str:
    """A DMARC/TLS-RPT report address: ``mailto:`` plus one of our strict addresses."""
    text = value[7:] if isinstance(value, str) and value.startswith("mailto:") else value
    local, domain = own_address(text)
    return f"{local}@{domain}"


_ANNOTATION_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$"
)


def annotation_key(value: object, kind: str = "annotation") -> str:
    """A qualified name, ``[prefix/]name``: the syntax of annotation and label keys."""
    if not isinstance(value, str) or not _ANNOTATION_KEY.fullmatch(value) or len(value) > 316:
        raise FieldError(f"{value!r} is not a valid {kind} key")
    return value


def label_key(value: object) -> str:
    return annotation_key(value, "label")


_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def label_value(value: object) -> str:
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
        raise FieldError(
            f"{value!r} is not a valid label value (at most 63 characters of a-z, A-Z, 0-9, "
            "'-', '_' and '.', starting and ending with a letter or digit)"
        )
    return value


_DNS_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9])?$")


def dns_name(value: object) -> str:
    """A DNS owner name as SPF includes use them: like a domain name, labels may start with '_'."""
    if not isinstance(value, str) or not value:
        raise FieldError("expected a DNS name (string)")
    if value != value.lower():
        raise FieldError(f"{value!r} must be lowercase ({value.lower()!r})")
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or not all(_DNS_LABEL.fullmatch(x) for x in labels):
        raise FieldError(
            f"{value!r} is not a DNS name (labels of a-z, 0-9, '-' and a leading '_'; at least two)"
        )
    return value
