"""The SMTP listener: mail to NUMBER@<fax domain> becomes a fax (see docs/email.md).

aiosmtpd speaks the protocol; this module decides. The policy (faxgate.intake.smtp.policy)
is applied as early as it can be: the sender at MAIL FROM, each recipient at RCPT TO, the
size while the message comes in. At DATA the message is read (faxgate.domain.message) and
refused there, while the client is still connected, when there is nothing to fax: no
bounce is ever sent to a forged sender. A message answered 250 is on disk with its jobs
(faxgate.intake.smtp.accept); a storing failure answers 451 and keeps nothing.

The handler has the handle_* steps only; the protocol is faxgate.intake.smtp.protocol and
the server faxgate.intake.smtp.listener. Messages are read (parsed) in worker processes
(faxgate.intake.smtp.reader).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from faxgate import metrics
from faxgate.clock import utc_now
from faxgate.domain.addressing import AddressBook, AddressRefused
from faxgate.domain.documents import DocumentRefused
from faxgate.domain.jobs import Intake, Job
from faxgate.domain.message import CoverMode, MessageRefused
from faxgate.intake.queue import Abandoned, Ticket
from faxgate.intake.smtp import policy
from faxgate.intake.smtp.accept import Fax, MailIntake, MailToFax
from faxgate.intake.smtp.auth import Authenticator, AuthLimiter
from faxgate.intake.smtp.message import SubjectRule
from faxgate.intake.smtp.protocol import FaxEnvelope, FaxSMTP
from faxgate.intake.smtp.reader import MessageReader
from faxgate.settings import Settings
from faxgate.store.spool import disk_trouble

log = logging.getLogger("faxgate.smtp")

_OK_MAIL: Final = "250 2.1.0 OK"
_OK_RCPT: Final = "250 2.1.5 OK"
_LOCKED_OUT: Final = "421 4.7.0 Too many failed authentication attempts"


@dataclass(frozen=True, slots=True)
class HandlerConfig:
    recipients: policy.RecipientRules
    allowed_senders: tuple[str, ...]
    max_recipients: int
    daily_limit: int
    cover: CoverMode
    default_line: str
    sender_lines: dict[str, str]

    @classmethod
    def of(cls, settings: Settings, book: AddressBook | None = None) -> HandlerConfig:
        """The handler's rules; `book` is the contacts file as read_address_book read it."""
        smtp = settings.smtp
        addressing = settings.addressing
        return cls(
            recipients=policy.RecipientRules.of(
                smtp.domains,
                settings.numbers.policy(),
                subject_addresses=addressing.subject_addresses,
                plus_addresses=addressing.plus_addresses,
                plus_delimiter=addressing.plus_delimiter,
                book=book,
            ),
            allowed_senders=tuple(smtp.allowed_senders),
            max_recipients=smtp.max_recipients,
            daily_limit=smtp.daily_limit,
            cover=CoverMode(smtp.cover),
            default_line=smtp.default_line,
            sender_lines=dict(smtp.sender_lines),
        )


class SmtpHandler:
    """aiosmtpd's hooks: the policy at each command, the durable accept at DATA."""

    def __init__(
        self,
        config: HandlerConfig,
        intake: MailIntake,
        reader: MessageReader,
        *,
        authenticator: Authenticator | None = None,
        login_limiter: AuthLimiter | None = None,
        pause: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_accept: Callable[[list[Job]], None] = lambda _jobs: None,
    ) -> None:
        self.config = config
        self.intake = intake
        self.reader = reader
        self._auth = authenticator if authenticator else None
        # Not named auth_*: aiosmtpd offers every handler attribute so named as a mechanism.
        self.login_limiter = login_limiter
        self.pause = pause  # how a throttled login waits (tests pass their own)
        self._on_accept = on_accept
        self.accepting: set[asyncio.Task[list[Job]]] = set()
        self._limit_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # -- greeting

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to a handler with this hook
        if self._auth is None:
            responses = [line for line in responses if not line[4:].startswith("AUTH")]
        return responses

    # -- AUTH (offered by aiosmtpd only after STARTTLS)

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if not await self._admit(server):
            return AuthResult(success=False, handled=True)
        blob = await _credential(server, args, "")
        if blob is None:
            return AuthResult(success=False, handled=True)
        parts = blob.split(b"\0")
        if len(parts) != 3:
            await server.push("501 5.5.2 cannot split the PLAIN credentials")
            return AuthResult(success=False, handled=True)
        return await self._check_login(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if not await self._admit(server):
            return AuthResult(success=False, handled=True)
        login = await _credential(server, args, server.AuthLoginUsernameChallenge)
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await _credential(server, [], server.AuthLoginPasswordChallenge)
        if password is None:
            return AuthResult(success=False, handled=True)
        return await self._check_login(server, login, password)

    async def _check_login(self, server: SMTP, login: bytes, password: bytes) -> AuthResult:
        if self._auth is None:
            return AuthResult(success=False, handled=False)
        user = await asyncio.to_thread(self._auth.check, login, password)
        client = _client(server.session)
        if user is None:
            # The name is not logged: it may be a mistyped password.
            log.info("smtp login refused peer=%s", client)
            limiter = self.login_limiter
            if limiter is not None and limiter.failed(client).refused:
                log.warning("smtp logins refused for a while peer=%s: too many failures", client)
                await _lock_out(server)
                return AuthResult(success=False, handled=True)
            return AuthResult(success=False, handled=False)
        if self.login_limiter is not None:
            self.login_limiter.succeeded(client)
        log.info("smtp login user=%s", user)
        return AuthResult(success=True, auth_data=user)

    async def _admit(self, server: SMTP) -> bool:
        """Slow down or refuse a login attempt from an address that failed too often."""
        if self.login_limiter is None or self._auth is None:
            return True
        client = _client(server.session)
        throttle = self.login_limiter.next_attempt(client)
        if throttle.refused:
            log.info("smtp login refused unchecked peer=%s: too many failures", client)
            await _lock_out(server)
            return False
        if throttle.delay:
            metrics.smtp_auth_throttled.labels(action="delayed").inc()
            await self.pause(throttle.delay)
        return True

    # -- envelope

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: FaxEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if any(ord(ch) < 32 or ord(ch) == 127 for ch in address):
            # A NUL or a line break would follow the address into logs and reply headers.
            malformed = policy.Refusal(
                553, "5.1.7", "the sender address holds control characters", "malformed"
            )
            return _refuse(malformed, session, "sender")
        sender = policy.normalise_sender(address)
        refusal = policy.check_sender(
            sender,
            authenticated=bool(session.authenticated),
            allowed=self.config.allowed_senders,
            auth_offered=self._auth is not None,
        )
        if refusal is not None:
            return _refuse(refusal, session, f"sender <{sender}>")
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return _OK_MAIL

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: FaxEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        found = policy.address_recipient(address, self.config.recipients)
        if isinstance(found, policy.Refusal):
            return _refuse(found, session, f"recipient <{address}>")
        if isinstance(found, policy.FromSubject):
            # Its numbers, and the limits they count against, are known at DATA.
            if found.address not in envelope.from_subject:
                envelope.from_subject.append(found.address)
        else:
            new = {d.number.e164: d for d in found if d.number.e164 not in envelope.faxes}
            if len(new) > self.config.max_recipients:  # a group: it cannot come in parts
                too_big = policy.Refusal(
                    550,
                    "5.5.3",
                    f"<{address}> has {len(new)} numbers; at most"
                    f" {self.config.max_recipients} faxes per message",
                    "too_many_recipients",
                )
                return _refuse(too_big, session, f"recipient <{address}>")
            if new:
                adding = len(envelope.faxes) + len(new)
                refusal = policy.too_many_recipients(adding - 1, self.config.max_recipients)
                refusal = refusal or await self._over_limit(session, envelope, adding)
                if refusal is not None:
                    return _refuse(refusal, session, f"recipient <{address}>")
            for key, destination in new.items():
                envelope.faxes[key] = Fax(
                    destination.number, recipient=address, cover_to=destination.cover_to or None
                )
        envelope.rcpt_tos.append(address)  # aiosmtpd leaves this to the hook
        envelope.rcpt_options.extend(rcpt_options)
        return _OK_RCPT

    async def handle_DATA(self, server: FaxSMTP, session: Session, envelope: FaxEnvelope) -> str:
        sender = policy.normalise_sender(envelope.mail_from or "")
        login = _login(session)
        faxes = list(envelope.faxes.values())
        raw = envelope.original_content or b""
        server.storing = True  # a stop lets this message have its answer
        try:
            mail = await self.reader.read(
                raw,
                sender=sender,
                login=login,
                faxes=faxes,
                cover=self.config.cover,
                from_line=policy.line_for(
                    sender, login, self.config.sender_lines, self.config.default_line
                ),
                from_subject=SubjectRule(
                    envelope.from_subject,
                    self.config.recipients.numbers,
                    self.config.max_recipients,
                )
                if envelope.from_subject
                else None,
            )
        except MessageRefused as refused:
            return _refuse(
                policy.Refusal(554, "5.6.0", refused.reason, "unfaxable"), session, "message"
            )
        except AddressRefused as refused:
            return _refuse(policy.subject_refusal(refused), session, "message")
        except Exception:
            log.exception("smtp message could not be read from=<%s>", sender)
            return _refuse(
                policy.Refusal(451, "4.3.0", "the message could not be read; try later", "error"),
                session,
                "message",
            )
        try:
            if self.config.daily_limit:
                async with self._limit_lock(_limit_key(sender, login)):
                    refusal = await self._over_limit(session, envelope, len(mail.faxes))
                    if refusal is not None:
                        return _refuse(refusal, session, "message")
                    jobs = await self._store(mail, server)
            else:
                jobs = await self._store(mail, server)
        except DocumentRefused as refused:
            return _refuse(
                policy.Refusal(554, "5.6.0", str(refused), "unfaxable"), session, "message"
            )
        except Abandoned:  # the client is gone: nobody reads this
            return "421 4.3.0 closing"
        except Exception as exc:
            if disk_trouble(exc) is None:  # a full or read-only disk is logged in a line
                log.exception("smtp message could not be stored from=<%s>", sender)
            return _refuse(
                policy.Refusal(
                    451, "4.3.0", "the message could not be stored; try again later", "storage"
                ),
                session,
                "message",
            )
        metrics.smtp_accepted.inc()
        log.info(
            "smtp message accepted from=<%s> jobs=%s message_id=%s",
            sender,
            ",".join(job.id for job in jobs),
            mail.intake_ref.get("message_id"),
        )
        self._on_accept(jobs)
        return f"250 2.0.0 OK: queued as {' '.join(job.id for job in jobs)}"

    async def _store(self, mail: MailToFax, server: FaxSMTP) -> list[Job]:
        """Store in a task of its own: a client hanging up must not cut a commit in half."""
        ticket = Ticket()
        task = asyncio.create_task(self.intake.accept(mail, ticket), name="smtp-accept")
        self.accepting.add(task)
        task.add_done_callback(self._accepted)
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            ticket.abandon()  # dropped if it has not reached the store yet
            server.storing = False
            raise

    def _accepted(self, task: asyncio.Task[list[Job]]) -> None:
        self.accepting.discard(task)
        if not task.cancelled() and isinstance(task.exception(), Abandoned):
            log.info("smtp client left before its message was stored; nothing kept")

    async def _over_limit(
        self, session: Session, envelope: FaxEnvelope, adding: int
    ) -> policy.Refusal | None:
        limit = self.config.daily_limit
        if not limit:
            return None
        sender = policy.normalise_sender(envelope.mail_from or "")
        login = _login(session)
        ref, value = ("login", login) if login else ("sender", sender)
        since = policy.start_of_day(utc_now())
        sent = await asyncio.to_thread(
            self.intake.store.count_intake_jobs, Intake.SMTP, since, ref=ref, value=value
        )
        return policy.daily_limit_reached(sent, adding, limit)

    def _limit_lock(self, key: str) -> asyncio.Lock:
        lock = self._limit_locks.get(key)
        if lock is None:
            lock = self._limit_locks[key] = asyncio.Lock()
        return lock


def _refuse(refusal: policy.Refusal, session: Session, what: str) -> str:
    metrics.smtp_refused.labels(reason=refusal.reason).inc()
    log.info("smtp refused what=%s peer=%s reply=%r", what, _peer(session), str(refusal))
    return str(refusal)


def _login(session: Session) -> str | None:
    return str(session.auth_data) if session.authenticated and session.auth_data else None


def _limit_key(sender: str, login: str | None) -> str:
    return f"login:{login}" if login else f"sender:{sender}"


def _client(session: Session | None) -> str:
    """The client's address, without its port: failed logins are counted by it."""
    peer = session.peer if session is not None else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


async def _lock_out(server: SMTP) -> None:
    metrics.smtp_auth_throttled.labels(action="refused").inc()
    await server.push(_LOCKED_OUT)
    if server.transport is not None:
        server.transport.close()


def _peer(session: Session) -> str:
    peer = session.peer
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def _credential(server: SMTP, args: list[str], challenge: str) -> bytes | None:
    """The credential given with the AUTH command, else asked for; None when the client
    gave up or sent garbage (aiosmtpd or this has answered it)."""
    if len(args) < 2:
        answer = await server.challenge_auth(challenge)
        return answer if isinstance(answer, bytes) else None
    try:
        return base64.b64decode(args[1].encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        await server.push("501 5.5.2 cannot decode base64")
        return None
