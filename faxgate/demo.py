"""`faxgate run --demo` (what `make run` starts): the whole product on the built-in sandbox
with nothing to write first. It fills in only what the settings leave empty (a hot folder,
where inbound faxes go, confirmation reports with the first page's image) and never
applies to a real provider, so an installation's settings mean exactly what they say.
"""

from __future__ import annotations

import os
from pathlib import Path

from faxgate.settings import ConfigError, FolderSettings, ListenAddress, Settings

OUTBOX = "outbox"
INBOX = "inbox"
# Inbound faxes by mail too: with no relay this address's mail lands in the Maildir.
INBOX_ADDRESS = "fax-inbox@localhost"
SANDBOX_LINE = "14155550100"  # the sandbox account's line, as faxes arrive at it


def demo_settings(settings: Settings) -> Settings:
    """`settings` with the demo's hot folder and inbound delivery where they have none."""
    if settings.provider.kind != "sandbox":
        raise ConfigError("--demo runs on the built-in sandbox only (provider.kind = sandbox)")
    state_dir = settings.state_dir.absolute()
    update: dict[str, object] = {}
    if not settings.folders:
        update["folders"] = [FolderSettings(path=state_dir / OUTBOX)]
    inbound = settings.inbound
    if not (inbound.routes or inbound.default_folder or inbound.default_email):
        update["inbound"] = inbound.model_copy(
            update={
                "default_folder": str(state_dir / INBOX),
                "default_email": [] if settings.mail.relay else [INBOX_ADDRESS],
            }
        )
    if "confirmation" not in settings.reports.model_fields_set:
        # Show the confirmation report whole: its image of the first page too.
        update["reports"] = settings.reports.model_copy(update={"confirmation": "with_image"})
    return settings.model_copy(update=update)


def banner(
    settings: Settings,
    *,
    smtp: ListenAddress | None,
    http: ListenAddress,
    sandbox_url: str | None,
    faxgate: str = "faxgate",
) -> str:
    """How to use what is running, in lines ready to paste; `faxgate` is the command as
    the user can type it."""
    domain = settings.smtp.domains[0]
    lines = [f"faxgate is ready on the {settings.provider.kind} (state in {settings.state_dir})"]
    if smtp is not None:
        lines.append(
            f"  mail a fax:    swaks --server {smtp} --from you@example.com"
            f" --to 14155550123@{domain} --attach @some.pdf"
        )
    lines.append(f'  or queue one:  {faxgate} send "+1 415 555 0123" some.pdf --wait')
    for folder in settings.folders:
        sent, failed, _ = (_shown(path) for path in folder.result_dirs())
        lines.append(
            f"  drop a file:   cp some.pdf {_shown(folder.path)}/14155550123_letter.pdf"
            f"  (then {sent}/ or {failed}/)"
        )
    if sandbox_url is not None:
        lines.append(
            f"  receive one:   {faxgate} sandbox inbound --url {sandbox_url}"
            f' --to {SANDBOX_LINE} --from "+1 212 555 0199" some.pdf'
        )
    inbound = settings.inbound
    if inbound.default_folder:
        lines.append(f"  inbound faxes: {_shown(Path(inbound.default_folder))}/")
    replies = (
        f"by the relay {settings.mail.relay}"
        if settings.mail.relay
        else f"in {_shown(settings.maildir / 'new')}/"
    )
    lines += [
        f"  mail out:      {replies} (replies, reports, inbound faxes)",
        f"  status page:   http://{http}/",
    ]
    return "\n".join(lines)


def _shown(path: Path) -> str:
    """A path as short as it can be said from here."""
    relative = os.path.relpath(path.absolute())
    return str(path) if relative.startswith("..") else relative
