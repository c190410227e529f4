"""Small, strict parsers for the files mailstack renders, for tests that check their structure.

Each parser accepts exactly the subset of its format that the templates are meant to produce and
raises ``ParseError`` for anything else (a line of an unexpected shape, a duplicate directive, an
unbalanced quote, ...), so a value that smuggled a line or a directive into a file shows up as a
parse error or as a directive the test did not expect. Lines are split on ``"\\n"`` only, as the
daemons do; other control characters are reported by ``control_characters``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field


class ParseError(ValueError):
    """The text is not in the expected format."""

    def __init__(self, what: str, lineno: int, line: str, message: str) -> None:
        super().__init__(f"{what} line {lineno}: {message}: {line!r}")


def _lines(text: str, what: str) -> list[tuple[int, str]]:
    if text and not text.endswith("\n"):
        raise ParseError(what, text.count("\n") + 1, text.rsplit("\n", 1)[-1], "no final newline")
    return list(enumerate(text.split("\n")[:-1] if text else [], start=1))


def control_characters(text: str, allowed: str = "\t\n") -> list[tuple[int, str]]:
    """(line number, character) of every control character (Unicode Cc: U+0000-U+001F and
    U+007F-U+009F) other than ``allowed``, and of the Unicode line and paragraph separators."""
    found = []
    for match in _control_pattern(allowed).finditer(text):
        found.append((text.count("\n", 0, match.start()) + 1, match.group()))
    return found


@functools.cache
def _control_pattern(allowed: str) -> re.Pattern[str]:
    chars = [chr(c) for c in (*range(0x20), *range(0x7F, 0xA0), 0x2028, 0x2029)]
    return re.compile("[" + "".join(re.escape(c) for c in chars if c not in allowed) + "]")


# --- Postfix ---------------------------------------------------------------------------------

_POSTFIX_PARAM = re.compile(r"^([A-Za-z0-9_]+) =(?: (\S.*))?$")


def _logical_lines(text: str, what: str) -> list[tuple[int, str]]:
    """Postfix's logical lines: a line starting with whitespace continues the previous one;
    blank lines and lines whose first non-blank character is '#' are ignored."""
    result: list[tuple[int, str]] = []
    for lineno, line in _lines(text, what):
        stripped = line.strip(" \t")
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t":
            if not result:
                raise ParseError(what, lineno, line, "continuation line without a start")
            start, previous = result[-1]
            result[-1] = (start, previous + " " + stripped)
        else:
            result.append((lineno, line.rstrip(" \t")))
    return result


def parse_main_cf(text: str) -> dict[str, str]:
    """main.cf → parameter name → value (continuations joined with one space)."""
    params: dict[str, str] = {}
    for lineno, line in _logical_lines(text, "main.cf"):
        match = _POSTFIX_PARAM.match(line)
        if not match:
            raise ParseError("main.cf", lineno, line, "not 'name = value'")
        name, value = match.group(1), match.group(2) or ""
        if name in params:
            raise ParseError("main.cf", lineno, line, f"{name} is set twice")
        params[name] = value
    return params


@dataclass(frozen=True)
class MasterEntry:
    service: str
    type: str
    private: str
    unpriv: str
    chroot: str
    wakeup: str
    maxproc: str
    command: str
    args: tuple[str, ...] = ()

    def options(self) -> dict[str, str]:
        """The ``-o name=value`` overrides."""
        result = {}
        args = list(self.args)
        while args:
            flag = args.pop(0)
            if flag == "-o" and args:
                name, _, value = args.pop(0).partition("=")
                result[name] = value
        return result


_MASTER_TYPES = {"inet", "unix", "unix-dgram", "fifo", "pass"}
_YES_NO = re.compile(r"^(y|n|yes|no|-)$")
_WAKEUP = re.compile(r"^(-|[0-9]+\??)$")
_MAXPROC = re.compile(r"^(-|[0-9]+)$")
_MASTER_ARG = re.compile(r"^[A-Za-z0-9_=,./$:+-]*$")


def parse_master_cf(text: str) -> list[MasterEntry]:
    """master.cf → its service entries, in order."""
    entries: list[MasterEntry] = []
    seen: set[tuple[str, str]] = set()
    for lineno, line in _logical_lines(text, "master.cf"):
        fields = line.split()
        if len(fields) < 8:
            raise ParseError("master.cf", lineno, line, "fewer than 8 fields")
        service, kind, private, unpriv, chroot, wakeup, maxproc, command, *args = fields
        if kind not in _MASTER_TYPES:
            raise ParseError("master.cf", lineno, line, f"unknown service type {kind!r}")
        for value in (private, unpriv, chroot):
            if not _YES_NO.match(value):
                raise ParseError("master.cf", lineno, line, f"bad flag {value!r}")
        if not _WAKEUP.match(wakeup) or not _MAXPROC.match(maxproc):
            raise ParseError("master.cf", lineno, line, "bad wakeup or maxproc")
        index = 0
        while index < len(args):
            if args[index] != "-o" or index + 1 == len(args) or "=" not in args[index + 1]:
                raise ParseError("master.cf", lineno, line, "arguments are not '-o name=value'")
            if not _MASTER_ARG.match(args[index + 1]):
                raise ParseError("master.cf", lineno, line, f"odd argument {args[index + 1]!r}")
            index += 2
        if (service, kind) in seen:
            raise ParseError("master.cf", lineno, line, f"service {service}/{kind} twice")
        seen.add((service, kind))
        entries.append(
            MasterEntry(
                service, kind, private, unpriv, chroot, wakeup, maxproc, command, tuple(args)
            )
        )
    return entries


_MAP_LINE = re.compile(r"^(\S+) (\S+)$")
# Postfix takes a value up to the end of its line; only the relay password may hold blanks.
_MAP_LINE_BLANKS = re.compile(r"^(\S+) (\S(?:.*\S)?)$")


def parse_postfix_map(
    text: str, what: str = "map", value_blanks: bool = False
) -> list[tuple[str, str]]:
    """A texthash: table → (key, value) pairs; exactly ``key value`` per line, no continuation,
    no comment, no blank line, no duplicate key, no whitespace inside a key (nor inside a value
    unless ``value_blanks``)."""
    entries: list[tuple[str, str]] = []
    keys: set[str] = set()
    for lineno, line in _lines(text, what):
        match = (_MAP_LINE_BLANKS if value_blanks else _MAP_LINE).match(line)
        if not match or line.startswith("#"):
            raise ParseError(what, lineno, line, "not 'key value'")
        key, value = match.groups()
        if key in keys:
            raise ParseError(what, lineno, line, f"duplicate key {key!r}")
        keys.add(key)
        entries.append((key, value))
    return entries


# --- Dovecot ---------------------------------------------------------------------------------


@dataclass
class DovecotSection:
    """One ``name [arg] {`` section: its settings (in order) and subsections."""

    name: str = ""
    arg: str | None = None
    settings: list[tuple[str, str]] = field(default_factory=list)
    sections: list[DovecotSection] = field(default_factory=list)

    def get(self, key: str) -> str:
        values = [v for k, v in self.settings if k == key]
        if len(values) != 1:
            raise KeyError(key)
        return values[0]

    def shape(self, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
        """Every section and setting name as a path, in file order (values left out)."""
        result: list[tuple[str, ...]] = []
        for key, _ in self.settings:
            result.append((*path, key))
        for section in self.sections:
            label = section.name if section.arg is None else f"{section.name} {section.arg}"
            result.append((*path, label + " {"))
            result.extend(section.shape((*path, label)))
        return result


_DOVECOT_SECTION = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*)(?: ([^\s{}\"'#=]+))? \{$")
_DOVECOT_SETTING = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*) =(?: (.*))?$")


def _strip_dovecot_comment(line: str) -> str:
    """Dovecot ends a line at the first '#' outside quotes (with a warning if no blank precedes
    it), so a '#' inside a value silently cuts it short; this parser does the same."""
    quote = ""
    for index, char in enumerate(line):
        if quote:
            if char == "\\":
                continue
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char == "#":
            return line[:index]
    return line


def parse_dovecot_conf(text: str) -> DovecotSection:
    """dovecot.conf → the tree of sections and settings. No ``!include``, no ``<file`` values
    except the ones the caller expects, no duplicate setting within a section."""
    root = DovecotSection()
    stack = [root]
    for lineno, raw in _lines(text, "dovecot.conf"):
        line = _strip_dovecot_comment(raw).strip(" \t")
        if not line:
            continue
        if line == "}":
            if len(stack) == 1:
                raise ParseError("dovecot.conf", lineno, raw, "'}' without a section")
            stack.pop()
            continue
        section = _DOVECOT_SECTION.match(line)
        if section:
            child = DovecotSection(section.group(1), section.group(2))
            stack[-1].sections.append(child)
            stack.append(child)
            continue
        setting = _DOVECOT_SETTING.match(line)
        if not setting:
            raise ParseError("dovecot.conf", lineno, raw, "neither 'key = value', 'name {' nor '}'")
        key, value = setting.group(1), (setting.group(2) or "").strip(" \t")
        if value.endswith("{"):
            raise ParseError("dovecot.conf", lineno, raw, "a value ending in '{' opens a section")
        if key in (k for k, _ in stack[-1].settings):
            raise ParseError("dovecot.conf", lineno, raw, f"{key} is set twice in one section")
        stack[-1].settings.append((key, value))
    if len(stack) != 1:
        raise ParseError("dovecot.conf", len(text.split("\n")), "", "unclosed section")
    return root


@dataclass(frozen=True)
class PasswdEntry:
    user: str
    password: str
    uid: str
    gid: str
    gecos: str
    home: str
    shell: str
    extra: tuple[tuple[str, str], ...]


_PASSWD_USER = re.compile(r"^[^\s:#]+$")
_PASSWD_HASH = re.compile(r"^\{[A-Z0-9.-]+\}[^\s:]+$")
_EXTRA_FIELD = re.compile(r"^([A-Za-z0-9_]+)=([^\s:]*)$")
_QUOTA_RULE = re.compile(r"^userdb_quota_rule=(\*:storage=[0-9]+[kMGT]?)$")


def parse_passwd_file(text: str, *, allow_short: bool = False) -> list[PasswdEntry]:
    """A Dovecot passwd-file → entries. Each line has exactly 8 ':'-separated fields
    (``user:password:uid:gid:gecos:home:shell:extra``); the 8th, blank-separated ``key=value``
    extra fields, may contain ':' only in ``userdb_quota_rule=*:storage=N``. With ``allow_short``
    trailing empty fields may be left out (Dovecot accepts ``user:password``)."""
    entries: list[PasswdEntry] = []
    users: set[str] = set()
    for lineno, line in _lines(text, "passwd"):
        parts = line.split(":", 7)
        if len(parts) != 8:
            if not (allow_short and len(parts) >= 2 and ":" not in parts[-1]):
                raise ParseError("passwd", lineno, line, f"{len(parts)} fields instead of 8")
            parts += [""] * (8 - len(parts))
        user, password, uid, gid, gecos, home, shell, extra_text = parts
        if not _PASSWD_USER.match(user):
            raise ParseError("passwd", lineno, line, "bad user name")
        if user in users:
            raise ParseError("passwd", lineno, line, f"user {user} twice")
        users.add(user)
        if not _PASSWD_HASH.match(password):
            raise ParseError("passwd", lineno, line, "the password is not a {SCHEME}hash")
        if any(c.isspace() for c in uid + gid + gecos + home + shell):
            raise ParseError("passwd", lineno, line, "whitespace in a fixed field")
        extra: list[tuple[str, str]] = []
        for token in extra_text.split(" ") if extra_text else []:
            quota = _QUOTA_RULE.match(token)
            match = _EXTRA_FIELD.match(token)
            if quota:
                extra.append(("userdb_quota_rule", quota.group(1)))
            elif match and match.group(1) != "userdb_quota_rule":
                extra.append((match.group(1), match.group(2)))
            else:
                raise ParseError("passwd", lineno, line, f"bad extra field {token!r}")
        entries.append(PasswdEntry(user, password, uid, gid, gecos, home, shell, tuple(extra)))
    return entries


# --- rspamd (UCL) ----------------------------------------------------------------------------

_UCL_SECTION = re.compile(r'^([A-Za-z0-9_.-]+)(?: "([^"\\]*)")? \{$')
# A key is a name or a quoted string (a header name, an action with a space).
_UCL_SETTING = re.compile(r'^([A-Za-z0-9_]+|"[A-Za-z0-9_ -]+") = (.+);$')
_UCL_BARE = re.compile(r"^[A-Za-z0-9_.:/+-]+$")
_UCL_STRING = re.compile(r'^"(?:[^"\\\x00-\x1f]|\\.)*"$')


def _ucl_value_ok(value: str) -> bool:
    if _UCL_BARE.match(value) or _UCL_STRING.match(value):
        return True
    if value.startswith("[") and value.endswith("]"):
        inner = value[1:-1].strip()
        if not inner:
            return True
        items = re.findall(r'"(?:[^"\\]|\\.)*"|[^,\s]+', inner)
        rebuilt = ", ".join(items)
        return rebuilt == inner and all(_ucl_value_ok(item) for item in items)
    return False


def _check_ucl_tokens(text: str) -> None:
    """Quotes close on their line; braces and brackets balance outside strings; no comment
    starts ('#', '/*', '//') outside strings except a whole-line '#' comment."""
    depth = {"{": 0, "[": 0}
    closing = {"}": "{", "]": "["}
    for lineno, line in _lines(text, "ucl"):
        if line.strip().startswith("#"):
            continue
        quote = False
        escaped = False
        for index, char in enumerate(line):
            if quote:
                if escaped:
                    escaped = False
                elif char == "\\":
                    escaped = True
                elif char == '"':
                    quote = False
                continue
            if char == '"':
                quote = True
            elif char == "#" or line.startswith(("/*", "//"), index):
                raise ParseError("ucl", lineno, line, "a comment inside a line")
            elif char in depth:
                depth[char] += 1
            elif char in closing:
                depth[closing[char]] -= 1
                if depth[closing[char]] < 0:
                    raise ParseError("ucl", lineno, line, f"unbalanced {char!r}")
        if quote:
            raise ParseError("ucl", lineno, line, "unterminated string")
        if depth["["]:
            raise ParseError("ucl", lineno, line, "a list spans lines")
    if depth["{"]:
        raise ParseError("ucl", 0, "", "unbalanced braces")


def parse_ucl(text: str) -> list[tuple[tuple[str, ...], str]]:
    """An rspamd ``local.d`` file → (key path, raw value) for every ``key = value;`` line, where
    a path holds the enclosing section names (``name "arg"`` as ``name arg``)."""
    _check_ucl_tokens(text)
    result: list[tuple[tuple[str, ...], str]] = []
    path: list[str] = []
    for lineno, raw in _lines(text, "ucl"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line == "}":
            if not path:
                raise ParseError("ucl", lineno, raw, "'}' without a section")
            path.pop()
            continue
        section = _UCL_SECTION.match(line)
        if section:
            path.append(section.group(1) + (f" {section.group(2)}" if section.group(2) else ""))
            continue
        setting = _UCL_SETTING.match(line)
        if not setting or not _ucl_value_ok(setting.group(2)):
            raise ParseError("ucl", lineno, raw, "not 'key = value;'")
        key = (*path, setting.group(1))
        if any(existing == key for existing, _ in result):
            raise ParseError("ucl", lineno, raw, f"{'.'.join(key)} set twice")
        result.append((key, setting.group(2)))
    if path:
        raise ParseError("ucl", 0, "", "unclosed section")
    return result


def ucl_string(value: str) -> str:
    """The text of a quoted UCL string value."""
    if not _UCL_STRING.match(value):
        raise ValueError(f"not a quoted string: {value!r}")
    return re.sub(r"\\(.)", r"\1", value[1:-1])


# --- DNS zone file ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ZoneRecord:
    name: str  # absolute, without the final dot
    ttl: int
    rclass: str
    type: str
    rdata: tuple[str, ...]  # TXT: the character-strings; else: the blank-separated fields


_ZONE_NAME = re.compile(r"^(?:[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.)+$")
_ZONE_TYPES = {"A", "AAAA", "MX", "TXT", "SRV", "CNAME", "CAA", "TLSA", "NS"}
_ZONE_FIELD = re.compile(r'^([A-Za-z0-9_.:-]+|"[ -!#-\[\]-~]*")$')
# Printable ASCII except '"' and '\\', or an escape: \DDD (a byte in decimal) or \<char>.
_TXT_STRING = re.compile(r'"((?:[ !#-\[\]-~]|\\[0-9]{3}|\\[ -/:-~])*)"')
_TXT_ESCAPE = re.compile(r"\\([0-9]{3}|[ -/:-~])")


def _unescape_txt(text: str) -> bytes:
    def byte(match: re.Match[str]) -> str:
        code = match.group(1)
        if code.isdigit():
            if int(code) > 255:
                raise ValueError(f"escape \\{code} is not a byte")
            return chr(int(code))
        return code

    # Escaped characters come back as code points below 256, so latin-1 yields their bytes.
    return _TXT_ESCAPE.sub(byte, text).encode("latin-1")


def parse_txt_rdata(rdata: str) -> tuple[str, ...]:
    """``"a" "b"`` → ("a", "b"): one or more quoted strings separated by one blank, each at most
    255 bytes, printable ASCII with ``\\DDD`` and ``\\<char>`` escapes (the form dnspython
    writes). Bytes are decoded as UTF-8, undecodable ones kept as surrogate escapes."""
    strings = []
    position = 0
    while True:
        match = _TXT_STRING.match(rdata, position)
        if not match:
            raise ValueError(f"not a quoted string at {position}: {rdata!r}")
        data = _unescape_txt(match.group(1))
        if len(data) > 255:
            raise ValueError(f"a character-string longer than 255 bytes: {rdata!r}")
        strings.append(data.decode("utf-8", errors="surrogateescape"))
        position = match.end()
        if position == len(rdata):
            return tuple(strings)
        if rdata[position] != " ":
            raise ValueError(f"junk after a quoted string at {position}: {rdata!r}")
        position += 1


def parse_zone(text: str) -> list[ZoneRecord]:
    """Zone-file lines as ``render_zone`` writes them: ``; comment`` lines and
    ``name.<TAB>ttl<TAB>IN<TAB>type<TAB>rdata`` records with absolute names. No directives
    ($ORIGIN, $INCLUDE), parentheses or in-line comments."""
    records = []
    for lineno, line in _lines(text, "zone"):
        if line.startswith(";"):
            continue
        fields = line.split("\t")
        if len(fields) != 5:
            raise ParseError("zone", lineno, line, f"{len(fields)} tab-separated fields, not 5")
        name, ttl, rclass, rtype, rdata = fields
        if not _ZONE_NAME.match(name):
            raise ParseError("zone", lineno, line, f"bad owner name {name!r}")
        if not ttl.isdigit() or not ttl.isascii():
            raise ParseError("zone", lineno, line, "bad TTL")
        if rclass != "IN" or rtype not in _ZONE_TYPES:
            raise ParseError("zone", lineno, line, "bad class or type")
        if rtype == "TXT":
            try:
                values = parse_txt_rdata(rdata)
            except ValueError as err:
                raise ParseError("zone", lineno, line, str(err)) from None
        else:
            values = tuple(rdata.split(" "))
            if not all(_ZONE_FIELD.match(value) for value in values):
                raise ParseError("zone", lineno, line, "bad rdata")
        records.append(ZoneRecord(name[:-1], int(ttl), rclass, rtype, values))
    return records
