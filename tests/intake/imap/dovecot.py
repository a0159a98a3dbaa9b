"""A real Dovecot for the IMAP intake's tests: its own configuration in a temporary folder,
loopback ports, TLS with a test CA (trustme), one passwd-file user, maildir storage. It
runs in the foreground (-F) as a child of the test and never reads /etc/dovecot."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import imaplib
import json
import os
import pwd
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import trustme

from tests import peers

USER = "fax@example.com"
PASSWORD = "imap-test-password"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def dovecot_binary() -> str:
    """Debian puts it in /usr/sbin, which a user's PATH may leave out."""
    found = shutil.which("dovecot", path=f"{os.environ.get('PATH', '')}:/usr/sbin")
    return found if found else peers.command("dovecot")


class Dovecot:
    def __init__(self, root: Path, capability: str = "") -> None:
        """`capability`: what the server announces, when not all it has (no IDLE, say)."""
        self.capability = capability
        self._made: Path | None = None
        if os.getuid() == 0:
            # Dovecot reads its users' file and keeps mail as users of its own: as root,
            # pytest's folders (mode 0700) are closed to them.
            self._made = root = Path(tempfile.mkdtemp(prefix="faxgate-dovecot-"))
        self.root = root
        self.binary = dovecot_binary()
        self.ca = trustme.CA()
        self.ca_file = root / "ca.pem"
        self.oauth2_key = secrets.token_bytes(32)
        self.imap_port = _free_port()
        self.imaps_port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._configure()

    def _configure(self) -> None:
        root = self.root
        for name in ("run", "state", "mail", "home"):
            (root / name).mkdir(parents=True, exist_ok=True)
        cert = self.ca.issue_cert("127.0.0.1", "localhost")
        cert.private_key_and_cert_chain_pem.write_to_path(str(root / "server.pem"))
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        me = pwd.getpwuid(os.getuid())
        if os.getuid() == 0:
            # As root, Dovecot drops to its own users and will not keep mail as root.
            users = "default_login_user = dovenull\ndefault_internal_user = dovecot\n"
            me = pwd.getpwnam("nobody")
            root.chmod(0o755)
            for name in ("mail", "home"):
                os.chown(root / name, me.pw_uid, me.pw_gid)
        else:
            users = f"default_login_user = {me.pw_name}\ndefault_internal_user = {me.pw_name}\n"
        (root / "passwd").write_text(
            f"{USER}:{{PLAIN}}{PASSWORD}:{me.pw_uid}:{me.pw_gid}::{root}/home/{USER}::\n"
        )
        # OAuth2 tokens are JWTs checked with a key of its own (no identity provider).
        keys = root / "keys" / "default" / "HS256"
        keys.mkdir(parents=True, exist_ok=True)
        (keys / "default").write_text(base64.b64encode(self.oauth2_key).decode())
        (root / "oauth2.conf").write_text(
            f"introspection_mode = local\n"
            f"local_validation_key_dict = fs:posix:prefix={root}/keys/\n"
            f"username_attribute = sub\n"
        )
        (root / "dovecot.conf").write_text(
            f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
{users}
ssl = yes
ssl_cert = <{root}/server.pem
ssl_key = <{root}/server.pem
disable_plaintext_auth = yes
auth_mechanisms = plain login xoauth2
auth_verbose = yes
auth_failure_delay = 0
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {root}/oauth2.conf
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {root}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service stats {{
  chroot =
}}
imap_idle_notify_interval = 2 mins
{f"imap_capability = {self.capability}" if self.capability else ""}
"""
        )

    def oauth2_token(self, lifetime: float = 600.0) -> str:
        """An access token for USER, as a provider's OAuth flow would hand out."""

        def part(data: bytes) -> bytes:
            return base64.urlsafe_b64encode(data).rstrip(b"=")

        now = int(time.time())
        claims = {"sub": USER, "iat": now, "nbf": now - 60, "exp": int(now + lifetime)}
        signed = part(b'{"alg":"HS256","typ":"JWT"}') + b"." + part(json.dumps(claims).encode())
        signature = hmac.new(self.oauth2_key, signed, hashlib.sha256).digest()
        return (signed + b"." + part(signature)).decode()

    def start(self, timeout: float = 15.0) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.root / "dovecot.conf")],
            stdout=subprocess.DEVNULL,
            stderr=(self.root / "dovecot.stderr").open("ab"),
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"dovecot exited: {self.logs()}")
            try:
                with self.client():
                    return
            except (OSError, imaplib.IMAP4.error):
                if time.monotonic() > deadline:
                    raise AssertionError(f"dovecot did not answer: {self.logs()}") from None
                time.sleep(0.05)  # polling a peer that is starting, with a deadline

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        """Remove the folder made for a root run (pytest removes its own)."""
        if self._made is not None:
            shutil.rmtree(self._made, ignore_errors=True)

    def logs(self) -> str:
        texts = []
        for name in ("dovecot.log", "dovecot.stderr"):
            with contextlib.suppress(OSError):
                texts.append((self.root / name).read_text()[-3000:])
        return "\n".join(texts)

    def tls_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    @contextlib.contextmanager
    def client(self) -> imaplib.IMAP4_SSL:  # type: ignore[misc]
        """A logged-in client of the test's own, as a mail system delivering would be."""
        imap = imaplib.IMAP4_SSL(
            "127.0.0.1", self.imaps_port, ssl_context=self.tls_context(), timeout=10
        )
        try:
            imap.login(USER, PASSWORD)
            yield imap
        finally:
            with contextlib.suppress(Exception):
                imap.logout()

    def append(self, raw: bytes, mailbox: str = "INBOX") -> None:
        with self.client() as imap:
            status, answer = imap.append(mailbox, None, None, raw)
            assert status == "OK", answer

    def append_many(self, messages: list[bytes], mailbox: str = "INBOX") -> None:
        with self.client() as imap:
            for raw in messages:
                status, answer = imap.append(mailbox, None, None, raw)
                assert status == "OK", answer

    def count(self, mailbox: str) -> int:
        """Messages in `mailbox`; 0 when it does not exist."""
        with self.client() as imap:
            status, data = imap.select(f'"{mailbox}"', readonly=True)
            if status != "OK":
                return 0
            return int(data[0] or 0)

    def message_ids(self, mailbox: str) -> list[str]:
        with self.client() as imap:
            status, _ = imap.select(f'"{mailbox}"', readonly=True)
            if status != "OK":
                return []
            status, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
            found = []
            for item in data:
                if isinstance(item, tuple):
                    header = item[1].decode().strip()
                    found.append(header.partition(":")[2].strip())
            return found
