"""A remote SMTP server for the tests: accepts mail and stores each message as a file.

Run inside the test's "internet" network namespace (``python -m tests.mail.sink HOST PORT DIR
[--tls FOLDER] [--login USER:PASSWORD]``). Recipients whose local part starts with ``reject`` get
a permanent 550, so a test can produce a bounce. Each accepted message is written as
``DIR/<n>.eml`` with the envelope in ``X-Sink-*`` header lines prepended (mail from, each rcpt,
the client address, its HELO name, and the TLS version and login when there were any).

With ``--tls`` the sink offers STARTTLS with ``FOLDER/cert.pem`` and ``FOLDER/key.pem``, read at
every handshake, so a test can swap the certificate the smarthost presents. With ``--login`` it
takes AUTH PLAIN (after STARTTLS only) and refuses mail from clients that did not log in: the
smarthost of a relay with credentials.
"""

from __future__ import annotations

import argparse
import base64
import os
import socketserver
import ssl
import threading
from pathlib import Path

COUNTER = iter(range(1, 1_000_000))
LOCK = threading.Lock()


class Handler(socketserver.StreamRequestHandler):
    directory: Path
    tls_folder: Path | None = None
    login: tuple[str, str] | None = None

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        try:
            self.session()
        except (ssl.SSLError, OSError):
            return  # a client that gave up on our certificate, or went away

    def starttls(self) -> str:
        """Switch the connection to TLS with the current certificate; the TLS version."""
        assert self.tls_folder is not None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.tls_folder / "cert.pem", self.tls_folder / "key.pem")
        self.reply("220 2.0.0 ready to start TLS")
        tls = context.wrap_socket(self.connection, server_side=True)
        self.connection = tls
        self.rfile, self.wfile = tls.makefile("rb"), tls.makefile("wb")
        return tls.version() or "?"

    def authenticate(self, line: str) -> str | None:
        """AUTH PLAIN, with or without an initial response: the user that logged in."""
        words = line.split()
        if len(words) < 2 or words[1].upper() != "PLAIN":
            self.reply("504 5.5.4 only PLAIN")
            return None
        if len(words) == 2:
            self.reply("334 ")
            words.append(self.rfile.readline(65536).decode(errors="replace").strip())
        try:
            _authzid, user, password = base64.b64decode(words[2]).decode().split("\0")
        except ValueError:
            self.reply("501 5.5.2 cannot decode")
            return None
        if (user, password) != self.login:
            self.reply("535 5.7.8 authentication credentials invalid")
            return None
        self.reply("235 2.7.0 authentication successful")
        return user

    def session(self) -> None:
        self.reply("220 sink.example.net ESMTP test sink")
        sender = ""
        recipients: list[str] = []
        tls_version = ""
        user = ""
        helo = ""
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                helo = line[5:].strip()
                offers = ["8BITMIME", "DSN"]
                if self.tls_folder is not None and not tls_version:
                    offers.append("STARTTLS")
                if self.login is not None and tls_version:
                    offers.append("AUTH PLAIN")
                offers.append("SIZE 104857600")
                self.wfile.write(
                    b"250-sink.example.net\r\n"
                    + b"".join(
                        f"250{'-' if i < len(offers) - 1 else ' '}{o}\r\n".encode()
                        for i, o in enumerate(offers)
                    )
                )
                self.wfile.flush()
            elif verb == "STAR" and self.tls_folder is not None and not tls_version:
                tls_version = self.starttls()
                sender, recipients = "", []
            elif verb == "AUTH" and self.login is not None and tls_version and not user:
                user = self.authenticate(line) or ""
            elif verb == "MAIL" and self.login is not None and not user:
                self.reply("530 5.7.0 authentication required")
            elif verb == "MAIL":
                sender = line.split(":", 1)[1].strip().split(" ")[0].strip("<>")
                recipients = []
                self.reply("250 2.1.0 ok")
            elif verb == "RCPT":
                rcpt = line.split(":", 1)[1].strip().split(" ")[0].strip("<>")
                if rcpt.split("@")[0].lower().startswith("reject"):
                    self.reply(f"550 5.1.1 <{rcpt}>: no such user here")
                else:
                    recipients.append(rcpt)
                    self.reply("250 2.1.5 ok")
            elif verb == "DATA":
                if not recipients:
                    self.reply("554 5.5.1 no valid recipients")
                    continue
                self.reply("354 go ahead")
                body = bytearray()
                while True:
                    chunk = self.rfile.readline(1 << 20)
                    if not chunk or chunk in (b".\r\n", b".\n"):
                        break
                    body += chunk[1:] if chunk.startswith(b"..") else chunk
                header = (
                    f"X-Sink-Mail-From: {sender}\r\n"
                    + "".join(f"X-Sink-Rcpt-To: {r}\r\n" for r in recipients)
                    + f"X-Sink-Client: {self.client_address[0]}\r\n"
                    + f"X-Sink-Helo: {helo}\r\n"
                    + (f"X-Sink-TLS: {tls_version}\r\n" if tls_version else "")
                    + (f"X-Sink-Login: {user}\r\n" if user else "")
                )
                with LOCK:
                    number = next(COUNTER)
                path = self.directory / f"{number:06d}.eml"
                tmp = path.with_suffix(".tmp")
                tmp.write_bytes(header.encode() + bytes(body))
                os.replace(tmp, path)
                self.reply("250 2.0.0 queued")
            elif verb == "RSET":
                sender, recipients = "", []
                self.reply("250 ok")
            elif verb == "NOOP":
                self.reply("250 ok")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("502 5.5.2 not implemented")


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--tls", type=Path, help="folder with cert.pem and key.pem")
    parser.add_argument("--login", help="USER:PASSWORD that clients must log in with")
    args = parser.parse_args()
    host, port, directory = args.host, args.port, args.directory
    directory.mkdir(parents=True, exist_ok=True)
    Handler.directory = directory
    Handler.tls_folder = args.tls
    if args.login:
        user, _, password = args.login.partition(":")
        Handler.login = (user, password)
    with Server((host, port), Handler) as server:
        print("sink ready", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
