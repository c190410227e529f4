"""A remote SMTP server for the tests: accepts mail and stores each message as a file.

Run inside the test's "internet" network namespace (``python -m tests.mail.sink HOST PORT DIR``).
Recipients whose local part starts with ``reject`` get a permanent 550, so a test can produce a
bounce. Each accepted message is written as ``DIR/<n>.eml`` with the envelope in ``X-Sink-*``
header lines prepended (mail from, each rcpt, the client address).
"""

from __future__ import annotations

import os
import socketserver
import sys
import threading
from pathlib import Path

COUNTER = iter(range(1, 1_000_000))
LOCK = threading.Lock()


class Handler(socketserver.StreamRequestHandler):
    directory: Path

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self.reply("220 sink.example.net ESMTP test sink")
        sender = ""
        recipients: list[str] = []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode(errors="replace").rstrip("\r\n")
            verb = line[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.wfile.write(
                    b"250-sink.example.net\r\n250-8BITMIME\r\n250-DSN\r\n250 SIZE 104857600\r\n"
                )
                self.wfile.flush()
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
    host, port, directory = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    directory.mkdir(parents=True, exist_ok=True)
    Handler.directory = directory
    with Server((host, port), Handler) as server:
        print("sink ready", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
