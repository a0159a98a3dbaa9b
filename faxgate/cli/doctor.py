"""`faxgate doctor`: the account, the public address and this machine, checked in plain
words, each problem with its fix (the checks: faxgate/doctor/)."""

from __future__ import annotations

import argparse

from faxgate.cli import common
from faxgate.doctor import PROBLEM, Finding, examine, problems


def register(subparsers: common.Subparsers) -> None:
    doctor = subparsers.add_parser(
        "doctor",
        help="check the account, its callbacks, the public address, lines, ports and folders",
        description="Checks what faxgate needs to work with these settings: the provider "
        "accepts the credentials, the account's callback URLs point at this faxgate, "
        "http.public_url answers, the account has fax lines, the listen ports are free (or "
        "held by the running faxgate), the folders are writable. Each problem comes with "
        "its fix; the exit status is 1 when there is one.",
    )
    common.add_json_flag(doctor)
    doctor.set_defaults(func=doctor_command)


def doctor_command(args: argparse.Namespace) -> int:
    settings = common.settings_from(args)
    findings = common.run_async(examine(settings))
    trouble = problems(findings)
    if args.json:
        common.print_json(
            {
                "ok": not trouble,
                "problems": len(trouble),
                "checks": [finding.as_json() for finding in findings],
            }
        )
        return common.EXIT_FAILURE if trouble else common.EXIT_OK
    origin = settings.source_file or "built-in defaults"
    print(f"faxgate doctor: the settings from {origin} and FAXGATE_* variables\n")
    _print_findings(findings)
    print()
    if not trouble:
        print("no problem found")
        return common.EXIT_OK
    print(f"{len(trouble)} problem{'s' if len(trouble) > 1 else ''}: see each fix above")
    return common.EXIT_FAILURE


def _print_findings(findings: list[Finding]) -> None:
    width = max(len(finding.check) for finding in findings)
    for finding in findings:
        label = "PROBLEM" if finding.state == PROBLEM else finding.state
        print(f"{label:<8} {finding.check:<{width}}  {finding.detail}")
        if finding.fix:
            print(f"{'':<8} {'':<{width}}  fix: {finding.fix}")
