"""The settings of the ways in and of telling people: SMTP, addressing, mail, inbound
faxes, hot folders."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    SecretStr,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from faxgate.settings.fields import (
    Duration,
    Listen,
    ListenAddress,
    _parse_listen,
    _Section,
    each_matching,
)

# The checks of addresses, patterns and password hashes are imported when a value needs
# them: most settings have none, and `faxgate status` should not load them.


def _check_address(text: str) -> str:
    from faxgate.domain.inbound_routes import check_address

    return check_address(text)


def _check_pattern_syntax(text: str) -> str:
    from faxgate.domain.inbound_routes import check_pattern_syntax

    return check_pattern_syntax(text)


class SmtpSettings(_Section):
    """The email-to-fax listener (see docs/email.md)."""

    listen: Listen = ListenAddress("127.0.0.1", 2525)
    # The name faxgate gives in its greeting; empty: this host's name.
    hostname: str = ""
    # Mail to NUMBER@<one of these> is faxed to NUMBER; case does not matter.
    domains: list[str] = Field(default_factory=lambda: ["fax.local"], min_length=1)
    # Fax recipients one message may have.
    max_recipients: int = Field(default=10, ge=1, le=100)
    # Larger messages are refused (552); advertised with SIZE.
    max_message_size: int = Field(default=25 * 1024 * 1024, ge=64 * 1024, le=1024**3)
    # Faxes one sender (or logged-in user) may send per day, counted from midnight UTC;
    # 0: no limit.
    daily_limit: int = Field(default=0, ge=0)
    # Who may send without logging in: addresses, "@domain", or patterns ("*@*.example.com").
    allowed_senders: list[str] = Field(default_factory=list)
    # Who may log in (AUTH PLAIN or LOGIN, offered only after STARTTLS) and then send from
    # any address: name = "scrypt$..." as `faxgate smtp hash-password` prints it.
    users: dict[str, SecretStr] = Field(default_factory=dict)
    # STARTTLS: PEM certificate (chain) and key files.
    tls_cert: str = ""
    tls_key: str = ""
    # Refuse mail until the client has started TLS.
    require_tls: bool = False
    # A client silent this long is disconnected (a whole message must come within it).
    idle_timeout: Duration = timedelta(minutes=10)
    # Connections at once, in all and from one address (Postfix opens up to 20 to one
    # destination): past either, a new one is told 421 and closed.
    max_connections: int = Field(default=100, ge=1)
    max_connections_per_client: int = Field(default=50, ge=1)
    # Processes that read messages (MIME parsing is CPU work kept off the event loop);
    # 0: a thread of the daemon instead.
    reader_processes: int = Field(default=2, ge=0, le=32)
    # The provider's cover page: "always", "when_body" (a message with text beside its
    # attachments) or "never". A header "X-Fax-Cover: no" turns it off for one message.
    cover: Literal["always", "when_body", "never"] = "when_body"
    # The line faxes are sent from (provider digits, e.g. "14155550100"): a sender's own
    # (keyed by address, "@domain" or user name), else default_line, else the account's
    # primary line.
    default_line: str = ""
    sender_lines: dict[str, str] = Field(default_factory=dict)
    # Attach the sent document to the reply (off: faxes often carry health data).
    attach_document: bool = False
    # Guessing passwords: after 5 failed logins from one address, each further attempt
    # waits this long, twice as long each time (at most 30 s); 0: no wait.
    auth_failure_delay: Duration = timedelta(seconds=1)
    # This many failed logins from one address within auth_failure_window, and its AUTH
    # is refused (421) until the oldest of them is that old; 0: never.
    auth_max_failures: int = Field(default=20, ge=0)
    auth_failure_window: Duration = timedelta(minutes=15)

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: list[str]) -> list[str]:
        cleaned = [domain.strip().lower().rstrip(".") for domain in value]
        return each_matching(
            cleaned, r"[a-z0-9-]+(\.[a-z0-9-]+)*", 'domain names such as ["fax.example.com"]'
        )

    @field_validator("allowed_senders")
    @classmethod
    def _senders(cls, value: list[str]) -> list[str]:
        cleaned = [entry.strip().lower() for entry in value]
        if any("@" not in entry or " " in entry for entry in cleaned):
            raise ValueError('expected addresses, "@domain" or patterns such as "*@example.com"')
        return cleaned

    @field_validator("users")
    @classmethod
    def _users(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, stored in value.items():
            if not name or name != name.strip():
                raise ValueError("a user name cannot be empty or start or end with a blank")
            from faxgate.domain.passwords import BadPasswordHash, parse_hash

            try:
                parse_hash(stored.get_secret_value())
            except BadPasswordHash as exc:
                raise ValueError(f"user {name!r}: {exc}") from None
        return value

    @field_validator("default_line")
    @classmethod
    def _default_line(cls, value: str) -> str:
        return _line_digits(value) if value else value

    @field_validator("sender_lines")
    @classmethod
    def _sender_lines(cls, value: dict[str, str]) -> dict[str, str]:
        return {key.strip().lower(): _line_digits(line) for key, line in value.items()}

    @model_validator(mode="after")
    def _tls_complete(self) -> SmtpSettings:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if not self.tls_cert and self.require_tls:
            raise ValueError("require_tls needs tls_cert and tls_key")
        if not self.tls_cert and self.users:
            raise ValueError("users need tls_cert and tls_key: AUTH is offered only after STARTTLS")
        return self


def _line_digits(value: str) -> str:
    digits = value.strip().removeprefix("+")
    if not re.fullmatch(r"[1-9][0-9]{5,14}", digits):
        raise ValueError('a line is given as the provider writes it, e.g. "14155550100"')
    return digits


class ImapSettings(_Section):
    """A mailbox watched over IMAP, its mail taken as if it came by SMTP (docs/email.md)."""

    enabled: bool = False
    host: str = ""
    # 993 with tls = "implicit", 143 with tls = "starttls".
    port: int = Field(default=993, ge=1, le=65535)
    tls: Literal["implicit", "starttls"] = "implicit"
    # A PEM file of the CAs to trust; empty: the system's.
    ca_file: str = ""
    username: str = ""
    password: SecretStr = SecretStr("")
    # An OAuth2 access token (SASL XOAUTH2) that an outside tool keeps fresh; read at each
    # login. When set, the password is not used.
    oauth2_token_file: str = ""
    mailbox: str = "INBOX"
    # Where a message goes once taken (its faxes queued) or refused; made when missing.
    processed_folder: str = "faxgate/processed"
    refused_folder: str = "faxgate/refused"
    # The mailbox's senders are checked against smtp.allowed_senders; without that list
    # the intake will not start unless only trusted people can put mail in the mailbox.
    trusted: bool = False
    # How often to look when the server has no IDLE, and how long one IDLE lasts before
    # it is renewed (servers drop one after 30 minutes).
    poll_interval: Duration = timedelta(seconds=60)
    idle_renewal: Duration = timedelta(minutes=25)

    @field_validator("mailbox", "processed_folder", "refused_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value or not value.isascii() or not value.isprintable() or '"' in value:
            raise ValueError("expected a folder name in printable ASCII without quotes")
        return value


class AddressingSettings(_Section):
    """Ways to address a fax besides NUMBER@<fax domain> (see docs/email.md)."""

    # Shared addresses whose mail is faxed to the numbers its subject starts with:
    # ["fax@company.com"] and "Subject: Fax to +1 415 555 0100: the contract".
    subject_addresses: list[str] = Field(default_factory=list)
    # Shared addresses that take the number after a delimiter: fax+14155550100@company.com.
    plus_addresses: list[str] = Field(default_factory=list)
    # Postfix's recipient_delimiter must let it through (the same character, or none).
    plus_delimiter: str = "+"
    # A contacts file, TOML or CSV by its ending: NAME@<fax domain> faxes a contact or every
    # number of a group. Read again on SIGHUP.
    contacts_file: str = ""
    # A group with more numbers than this is refused.
    max_group_size: int = Field(default=20, ge=1, le=1000)

    @field_validator("subject_addresses", "plus_addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        cleaned = [entry.strip().lower() for entry in value]
        for entry in cleaned:
            local, at, domain = entry.rpartition("@")
            if not at or not local or "." not in domain or " " in entry:
                raise ValueError('expected whole addresses such as ["fax@example.com"]')
        return cleaned

    @field_validator("plus_delimiter")
    @classmethod
    def _delimiter(cls, value: str) -> str:
        if len(value) != 1 or value not in "+-_=.":
            raise ValueError('expected one of "+", "-", "_", "=", "."')
        return value

    @field_validator("contacts_file")
    @classmethod
    def _contacts_file(cls, value: str) -> str:
        if value and Path(value).suffix.lower() not in (".toml", ".csv"):
            raise ValueError("a contacts file is a .toml or a .csv file")
        return value


class MailSettings(_Section):
    """Outgoing mail: replies to senders, reports, inbound faxes."""

    from_address: str = "faxgate@localhost"
    # "host:port" of an SMTP relay; empty: mail is written to a Maildir under state_dir.
    relay: str = ""
    starttls: bool = False
    username: str = ""
    password: SecretStr = SecretStr("")

    @field_validator("relay")
    @classmethod
    def _relay(cls, value: str) -> str:
        if value:
            _parse_listen(value)
        return value


def _one_or_many(value: object) -> object:
    """`to = "+1 415 555 0100"` reads as a list of one."""
    return [value] if isinstance(value, str) else value


def _inbound_folder(value: str) -> str:
    if value and not Path(value).is_absolute():
        raise ValueError("give the folder as an absolute path, e.g. /srv/fax/in")
    return value


def _check_addresses(value: list[str]) -> list[str]:
    return [_check_address(text) for text in value]


# Mail addresses, each checked; one alone reads as a list of one.
Addresses = Annotated[list[str], BeforeValidator(_one_or_many), AfterValidator(_check_addresses)]
# Where inbound faxes are put: an absolute path, or empty for nowhere.
InboundFolder = Annotated[str, AfterValidator(_inbound_folder)]


class InboundRouteSettings(_Section):
    """One rule for inbound faxes: the lines and senders it applies to, where they go."""

    name: str = ""
    # Numbers or patterns ("+1415555*"); a rule that leaves one out applies to any.
    to: list[str] = Field(default_factory=list)
    from_: list[str] = Field(default_factory=list, alias="from")
    email: Addresses = Field(default_factory=list)
    folder: InboundFolder = ""

    @field_validator("to", "from_", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        return _one_or_many(value)

    @field_validator("to", "from_")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        return [_check_pattern_syntax(text) for text in value]

    @model_validator(mode="after")
    def _goes_somewhere(self) -> InboundRouteSettings:
        if not self.email and not self.folder:
            raise ValueError("a route needs email recipients, a folder, or both")
        return self

    @model_serializer(mode="wrap")
    def _from_as_written(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        data["from"] = data.pop("from_")  # the key as the file writes it
        return data


class InboundSettings(_Section):
    """Faxes received on the account's lines: where each goes (see docs/inbound.md)."""

    # Tried in order; the first rule matching the line (to) and sender (from) wins.
    routes: list[InboundRouteSettings] = Field(default_factory=list)
    # Where a fax no rule matches goes. Both empty: nowhere; it is kept and listed by
    # `faxgate inbox`.
    default_email: Addresses = Field(default_factory=list)
    default_folder: InboundFolder = ""
    # A reduced image of page 1 in the mail's body (the PDF is attached either way);
    # false leaves it out, for health data that should not show in a mail preview.
    page_image: bool = True


class FolderSettings(_Section):
    """One hot folder: files dropped into `path` become faxes (see docs/hotfolder.md)."""

    path: Path
    # "inotify": the kernel tells faxgate of each file as it is closed (local disks, and
    # shares this machine serves). "poll": the folder is listed every poll_interval; for
    # SMB or NFS shares mounted here, where inotify sees nothing.
    mode: Literal["inotify", "poll"] = "inotify"
    poll_interval: Duration = timedelta(seconds=2)
    # A file found by listing the folder (poll mode, at start, at a rescan) is taken once
    # its size and time have not changed for this long.
    stable_for: Duration = timedelta(seconds=3)
    # inotify mode: list the folder this often too, for anything the events missed.
    rescan_interval: Duration = timedelta(minutes=1)
    # A file whose name holds no number waits this long for its sidecar, then is refused.
    sidecar_wait: Duration = timedelta(seconds=10)
    # Where files go when done; relative paths are inside the folder (and never taken).
    sent_dir: Path = Path("sent")
    failed_dir: Path = Path("failed")
    processing_dir: Path = Path("processing")
    # Keep sent/ and failed/ in one subfolder per day (sent/2024-05-01/).
    date_subfolders: bool = False
    # Larger files are refused (bytes); the provider takes at most 30 MB per fax.
    max_file_size: int = Field(default=30 * 1024 * 1024, ge=1)
    # Cover page and report address for files whose sidecar does not say.
    cover_to: str = ""
    cover_from: str = ""
    cover_message: str = ""
    notify: str = ""

    @field_validator("notify")
    @classmethod
    def _notify(cls, value: str) -> str:
        return _check_address(value) if value else value

    @model_validator(mode="after")
    def _result_dirs_apart(self) -> FolderSettings:
        folder = Path(os.path.normpath(self.path.absolute()))
        dirs = [Path(os.path.normpath(folder / d)) for d in self.result_dirs()]
        if folder in dirs:
            raise ValueError("sent_dir, failed_dir and processing_dir must not be the folder")
        if len(set(dirs)) != len(dirs):
            raise ValueError("sent_dir, failed_dir and processing_dir must differ")
        return self

    def result_dirs(self) -> tuple[Path, Path, Path]:
        """(sent, failed, processing), relative ones taken inside the folder."""
        return (
            self.path / self.sent_dir,
            self.path / self.failed_dir,
            self.path / self.processing_dir,
        )


def _distinct_folders(value: object) -> object:
    if isinstance(value, list):
        paths = [
            item.get("path") if isinstance(item, dict) else getattr(item, "path", None)
            for item in value
        ]
        seen = [os.path.normpath(os.path.abspath(p)) for p in paths if isinstance(p, str | Path)]
        if len(set(seen)) != len(seen):
            raise ValueError("each hot folder may be listed only once")
    return value


Folders = Annotated[list[FolderSettings], BeforeValidator(_distinct_folders)]
