"""DKIM keys: TXT values that verifiers accept, key files that rspamd signs with, strict loading."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

import dns.rdata
import dns.rdataclass
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dns.rdtypes.ANY.TXT import TXT

from mailstack.material import dkim as dkim_module
from mailstack.material.dkim import DkimKey, generate_dkim_key, load_dkim_key
from mailstack.material.errors import MaterialError

dkim = pytest.importorskip("dkim")  # dkimpy, with pynacl for Ed25519

MESSAGE = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.org\r\n"
    b"Subject: hello\r\n"
    b"Date: Mon, 01 Jan 2024 00:00:00 +0000\r\n"
    b"Message-ID: <1@example.com>\r\n"
    b"\r\n"
    b"Hello Bob.\r\n"
)


@pytest.fixture(scope="module")
def rsa_key() -> DkimKey:
    return generate_dkim_key("mail2024", "rsa2048")


@pytest.fixture(scope="module")
def ed_key() -> DkimKey:
    return generate_dkim_key("ed", "ed25519")


@pytest.fixture(params=["rsa2048", "ed25519"])
def key(request: pytest.FixtureRequest, rsa_key: DkimKey, ed_key: DkimKey) -> DkimKey:
    return rsa_key if request.param == "rsa2048" else ed_key


def _tags(value: str) -> dict[str, str]:
    return dict(part.strip().split("=", 1) for part in value.split(";"))


def _dns_answer(key: DkimKey) -> bytes:
    """What a resolver hands a verifier: the record's strings (each ≤ 255 bytes), joined."""
    text = " ".join(f'"{s}"' for s in key.txt_strings())
    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, text)
    assert isinstance(rdata, TXT)
    return b"".join(rdata.strings)


def _verify(key: DkimKey, signed: bytes) -> bool:
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{key.selector}._domainkey.example.com.".encode()
        return _dns_answer(key)

    return bool(dkim.verify(signed, dnsfunc=dnsfunc))


def test_rsa_dns_value_carries_the_spki_of_the_private_key(rsa_key: DkimKey) -> None:
    tags = _tags(rsa_key.dns_value())
    assert list(tags) == ["v", "k", "p"]
    assert tags["v"] == "DKIM1" and tags["k"] == "rsa"
    public = serialization.load_der_public_key(base64.b64decode(tags["p"]))
    private = serialization.load_pem_private_key(rsa_key.private_key_pem.encode(), None)
    assert isinstance(public, rsa.RSAPublicKey) and isinstance(private, rsa.RSAPrivateKey)
    assert public.public_numbers() == private.public_key().public_numbers()
    assert public.key_size == 2048 and public.public_numbers().e == 65537


def test_ed25519_dns_value_is_the_raw_public_key(ed_key: DkimKey) -> None:
    tags = _tags(ed_key.dns_value())
    assert tags["v"] == "DKIM1" and tags["k"] == "ed25519"
    raw = base64.b64decode(tags["p"])
    assert len(raw) == 32  # RFC 8463: raw key, not SubjectPublicKeyInfo
    private = serialization.load_pem_private_key(ed_key.private_key_pem.encode(), None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    assert raw == public


def test_txt_strings_fit_dns_and_join_back(key: DkimKey) -> None:
    strings = key.txt_strings()
    assert all(len(s.encode()) <= 255 for s in strings)
    assert "".join(strings) == key.dns_value()
    assert _dns_answer(key) == key.dns_value().encode()
    if key.algorithm == "rsa2048":
        assert len(strings) == 2  # ~410 characters for a 2048-bit key


def test_signature_made_with_the_private_key_verifies_against_the_txt_value(key: DkimKey) -> None:
    if key.algorithm == "ed25519":
        # dkimpy takes the base64 32-byte seed for Ed25519.
        private = base64.b64encode(base64.b64decode(key.rspamd_private_key())[:32])
        algorithm = b"ed25519-sha256"
    else:
        private = key.private_key_pem.encode()
        algorithm = b"rsa-sha256"
    header = dkim.sign(
        MESSAGE,
        key.selector.encode(),
        b"example.com",
        private,
        signature_algorithm=algorithm,
        include_headers=[b"from", b"to", b"subject"],
    )
    signed = header + MESSAGE
    assert _verify(key, signed)
    assert not _verify(key, signed.replace(b"Hello Bob", b"Hello Eve"))
    other = generate_dkim_key(key.selector, key.algorithm)
    assert not _verify(other, signed)


@pytest.mark.skipif(shutil.which("rspamadm") is None, reason="rspamd is not installed")
def test_rspamd_signs_with_the_key_file_and_the_signature_verifies(
    key: DkimKey, tmp_path: Path
) -> None:
    key_file = tmp_path / "dkim.key"
    key_file.write_text(key.rspamd_private_key())
    message = tmp_path / "message.eml"
    message.write_bytes(MESSAGE)
    # An empty config keeps rspamadm from loading the whole stock configuration (~9 s).
    config = tmp_path / "rspamd.conf"
    config.write_text("options { }\n")
    result = subprocess.run(
        [
            *("rspamadm", "mime", "-c", str(config), "sign", "-d", "example.com"),
            *("-s", key.selector, "-k", str(key_file), "-o", "signature", str(message)),
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    signature = result.stdout.strip()
    expected = b"a=ed25519-sha256" if key.algorithm == "ed25519" else b"a=rsa-sha256"
    assert expected in signature
    assert _verify(key, b"DKIM-Signature: " + signature + b"\r\n" + MESSAGE)


def test_rspamd_key_forms(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    assert rsa_key.rspamd_private_key() == rsa_key.private_key_pem
    assert rsa_key.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    raw = base64.b64decode(ed_key.rspamd_private_key())
    # rspamadm dkim_keygen -t ed25519 writes libsodium's secret key: seed, then public key.
    assert len(raw) == 64
    assert base64.b64encode(raw[32:]).decode() == _tags(ed_key.dns_value())["p"]


def test_load_round_trips_and_normalises(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    for key in (rsa_key, ed_key):
        assert load_dkim_key(key.selector, key.algorithm, key.private_key_pem) == key
        assert load_dkim_key(key.selector, key.algorithm, key.private_key_pem.encode()) == key
        # What the rendered Secret holds (rspamd's form) reads back as the same key.
        assert load_dkim_key(key.selector, key.algorithm, key.rspamd_private_key()) == key
    private = serialization.load_pem_private_key(rsa_key.private_key_pem.encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey)
    traditional = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    assert traditional.startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert load_dkim_key("mail2024", "rsa2048", traditional) == rsa_key
    seed_only = base64.b64encode(base64.b64decode(ed_key.rspamd_private_key())[:32]).decode()
    assert load_dkim_key("ed", "ed25519", seed_only) == ed_key


def test_load_refuses_the_wrong_algorithm(rsa_key: DkimKey, ed_key: DkimKey) -> None:
    with pytest.raises(MaterialError, match="Ed25519 key, but the algorithm is rsa2048"):
        load_dkim_key("s", "rsa2048", ed_key.private_key_pem)
    with pytest.raises(MaterialError, match="RSA key, but the algorithm is ed25519"):
        load_dkim_key("s", "ed25519", rsa_key.private_key_pem)
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
    with pytest.raises(MaterialError, match="ECDSA key"):
        load_dkim_key("s", "rsa2048", ec_pem)


def test_load_refuses_short_rsa_keys() -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    pem = short.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(MaterialError, match="1024 bits; at least 2048"):
        load_dkim_key("s", "rsa2048", pem)


def test_load_refuses_what_does_not_parse(ed_key: DkimKey) -> None:
    with pytest.raises(MaterialError, match="not a PEM private key"):
        load_dkim_key(
            "s", "rsa2048", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        )
    with pytest.raises(MaterialError, match="not a PEM private key"):
        load_dkim_key("s", "rsa2048", "")
    with pytest.raises(MaterialError, match="neither PEM nor base64"):
        load_dkim_key("s", "ed25519", "not a key!")
    with pytest.raises(MaterialError, match="decodes to 3 bytes"):
        load_dkim_key("s", "ed25519", "AAAA")
    raw = bytearray(base64.b64decode(ed_key.rspamd_private_key()))
    raw[-1] ^= 1
    with pytest.raises(MaterialError, match="does not belong to its seed"):
        load_dkim_key("s", "ed25519", base64.b64encode(bytes(raw)).decode())
    private = serialization.load_pem_private_key(ed_key.private_key_pem.encode(), None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    encrypted = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    ).decode()
    with pytest.raises(MaterialError, match="encrypted"):
        load_dkim_key("s", "ed25519", encrypted)


def test_blanks_around_a_stored_key_are_neither_kept_nor_a_new_cache_entry(
    rsa_key: DkimKey,
) -> None:
    """#13 check H6: the tenant may write its ``<name>-dkim`` Secret. Its valid key followed by
    600 KB of blank lines, of another length each time, read back as the same key and add no
    entry to the parse cache (keyed by the stripped text, not by 600 KB each)."""
    load_dkim_key("s", "rsa2048", rsa_key.private_key_pem)
    before = dkim_module._parse_stripped_key.cache_info().currsize
    for i in range(5):
        padded = rsa_key.private_key_pem + "\n" * (600_000 + i)
        assert load_dkim_key("mail2024", "rsa2048", padded.encode()) == rsa_key
    assert dkim_module._parse_stripped_key.cache_info().currsize == before


def test_a_key_text_over_the_bound_is_refused_unparsed(rsa_key: DkimKey) -> None:
    """#13 check H6: a text longer than any key (a valid key and junk that the PEM reader may
    skip) is a damaged key, never parsed nor cached: the spec's key is generated anew."""
    before = dkim_module._parse_stripped_key.cache_info()
    junk = rsa_key.private_key_pem + "x" * dkim_module.MAX_KEY_TEXT
    with pytest.raises(MaterialError, match="characters long"):
        load_dkim_key("s", "rsa2048", junk)
    after = dkim_module._parse_stripped_key.cache_info()
    assert (after.hits, after.misses) == (before.hits, before.misses)


def test_generate_refuses_unknown_algorithms() -> None:
    with pytest.raises(MaterialError, match="unknown DKIM algorithm"):
        generate_dkim_key("s", "rsa1024")  # type: ignore[arg-type]
