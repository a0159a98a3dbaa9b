"""Addressing a fax as offices do, through the real listener: the number in the subject of
mail to a shared address, plus-addressing, contacts and groups, reloaded on SIGHUP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from faxgate.app import Daemon, StartupError
from faxgate.domain.jobs import Job
from tests.intake.smtp.testing import (
    FAX_DOMAIN,
    SENDER,
    fax_mail,
    smtp_client,
    smtp_daemon,
    smtp_port,
)

SHARED = "fax@company.example"
CONTACTS = """
[contacts.drsmith]
number = "+1 415 555 0171"
cover = "Dr Smith"

[contacts.broken]
number = "+1 900 555 0100"

[groups]
pharmacies = ["drsmith", "+1 415 555 0172", "+1 415 555 0173"]
"""


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    contacts = tmp_path / "contacts.toml"
    contacts.write_text(CONTACTS)
    sections = {
        "addressing": {
            "subject_addresses": [SHARED],
            "plus_addresses": [SHARED],
            "contacts_file": str(contacts),
            "max_group_size": 5,
        }
    }
    async with smtp_daemon(
        tmp_path / "state", sections=sections, cover="always", max_recipients=4
    ) as running:
        yield running


def jobs_of(daemon: Daemon) -> list[Job]:
    return sorted(daemon.store.recent_jobs(50), key=lambda job: job.to_number)


async def send(daemon: Daemon, recipients: list[str], message: bytes) -> tuple[int, str, str]:
    """(code, enhanced status, text) of the first refusal, else of the reply to DATA."""
    async with smtp_client(smtp_port(daemon)) as client:
        await client.ehlo()
        reply = await client.send(SENDER, recipients, message)
        return reply.code, reply.status, reply.text


async def test_numbers_in_the_subject_of_mail_to_the_shared_address(daemon: Daemon) -> None:
    message = fax_mail(SHARED, subject="Fax to +1 415 555 0161, +1 415 555 0162: Contract")
    code, _, _ = await send(daemon, [SHARED], message)
    assert code == 250
    jobs = jobs_of(daemon)
    assert [job.to_number for job in jobs] == ["+14155550161", "+14155550162"]
    for job in jobs:
        # The rest of the subject is the cover page's; the shared address names no one.
        assert job.cover_message is not None
        assert job.cover_message.startswith("Contract")
        assert "555" not in job.cover_message
        assert job.cover_to is None
        assert job.intake_ref["recipient"] == SHARED


@pytest.mark.parametrize(
    ("subject", "code", "status", "words"),
    [
        ("Contract", 550, "5.1.3", "the subject must start with the fax number"),
        ("Please fax to +1 415 555 0161", 550, "5.1.3", '"Fax to +1 415 555 0100: the'),
        ("Fax to +1 900 555 0100", 550, "5.7.1", "+1 900 555 0100: "),
        (", ".join(f"+1 415 555 01{n}" for n in range(60, 65)), 550, "5.5.3", "at most 4"),
    ],
)
async def test_a_subject_that_names_no_fax_is_refused_saying_why(
    daemon: Daemon, subject: str, code: int, status: str, words: str
) -> None:
    result = await send(daemon, [SHARED], fax_mail(SHARED, subject=subject))
    assert result[:2] == (code, status), result
    assert words in result[2]
    assert jobs_of(daemon) == []


async def test_the_subject_adds_to_the_other_recipients_once_each(daemon: Daemon) -> None:
    message = fax_mail(SHARED, "14155550161", subject="+1 415 555 0161, +1 415 555 0163 - Hi")
    code, _, _ = await send(daemon, [SHARED, f"14155550161@{FAX_DOMAIN}"], message)
    assert code == 250
    assert [job.to_number for job in jobs_of(daemon)] == ["+14155550161", "+14155550163"]


async def test_plus_addressing(daemon: Daemon) -> None:
    address = "fax+14155550164@company.example"
    assert (await send(daemon, [address], fax_mail(address)))[0] == 250
    assert [job.to_number for job in jobs_of(daemon)] == ["+14155550164"]
    result = await send(daemon, ["fax+19005550100@company.example"], fax_mail("x"))
    assert result[:2] == (550, "5.7.1")


async def test_a_contact_by_name_with_its_cover_name(daemon: Daemon) -> None:
    address = f"DrSmith@{FAX_DOMAIN}"
    assert (await send(daemon, [address], fax_mail(address)))[0] == 250
    (job,) = jobs_of(daemon)
    assert (job.to_number, job.cover_to) == ("+14155550171", "Dr Smith")


async def test_a_group_is_one_fax_per_member(daemon: Daemon) -> None:
    address = f"pharmacies@{FAX_DOMAIN}"
    assert (await send(daemon, [address], fax_mail(address)))[0] == 250
    jobs = jobs_of(daemon)
    assert [job.to_number for job in jobs] == ["+14155550171", "+14155550172", "+14155550173"]
    assert len({job.group_id for job in jobs}) == 1


@pytest.mark.parametrize(
    ("recipient", "status", "words"),
    [
        (f"drsmtih@{FAX_DOMAIN}", "5.1.1", "neither a fax number nor a name in the address book"),
        (f"broken@{FAX_DOMAIN}", "5.1.1", "broken is in the address book but cannot be used"),
        ("sales@company.example", "5.1.1", "no relaying"),
    ],
)
async def test_names_that_fax_nothing_are_refused_at_rcpt(
    daemon: Daemon, recipient: str, status: str, words: str
) -> None:
    code, got, text = await send(daemon, [recipient], fax_mail("x"))
    assert (code, got) == (550, status)
    assert words in text


async def test_a_group_larger_than_a_message_may_be_is_refused_for_good(tmp_path: Path) -> None:
    contacts = tmp_path / "contacts.csv"
    contacts.write_text(
        "name,number,groups\n" + "".join(f"p{n},+1 415 555 01{n},all\n" for n in range(80, 83))
    )
    sections = {"addressing": {"contacts_file": str(contacts)}}
    async with smtp_daemon(tmp_path / "state", sections=sections, max_recipients=2) as daemon:
        code, status, text = await send(daemon, [f"all@{FAX_DOMAIN}"], fax_mail("x"))
        assert (code, status) == (550, "5.5.3")
        assert "has 3 numbers; at most 2 faxes per message" in text


async def test_the_contacts_file_is_read_again_on_reload(daemon: Daemon, tmp_path: Path) -> None:
    address = f"northside@{FAX_DOMAIN}"
    assert (await send(daemon, [address], fax_mail(address)))[0] == 550
    contacts = tmp_path / "contacts.toml"
    contacts.write_text(CONTACTS + '\n[contacts.northside]\nnumber = "+1 415 555 0174"\n')
    await daemon.reload_from(daemon.settings)  # the settings unchanged: the file is not
    assert (await send(daemon, [address], fax_mail(address)))[0] == 250
    assert [job.to_number for job in jobs_of(daemon)] == ["+14155550174"]

    # A file that cannot be read keeps the book in use.
    contacts.write_text("[contacts.x\n")
    await daemon.reload_from(daemon.settings)
    assert (await send(daemon, [address], fax_mail(address)))[0] == 250


async def test_a_contacts_file_that_cannot_be_read_stops_the_start(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "contacts.toml"
    sections = {"addressing": {"contacts_file": str(missing)}}
    with pytest.raises(StartupError, match=f"cannot read the contacts file {missing}"):
        async with smtp_daemon(tmp_path / "state", sections=sections):
            pass
