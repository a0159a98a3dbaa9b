"""This machine, with faxgate.preflight's checks: the daemon, ports, folders, the store."""

from __future__ import annotations

from faxgate import preflight
from faxgate.doctor.findings import OK, PROBLEM, Finding, count
from faxgate.settings import Settings


def check_this_machine(settings: Settings) -> list[Finding]:
    """faxgate.preflight's checks, one finding each (blocking IO: run in a thread)."""
    found = _folders(settings)
    running = preflight.another_faxgate(settings.state_dir) is not None
    state_dir = settings.state_dir
    found.append(
        Finding(
            "daemon",
            OK,
            f"a faxgate is running with the state directory {state_dir}"
            if running
            else f"no faxgate is running with the state directory {state_dir}",
        )
    )
    found += _ports(settings, running=running)
    found.append(_store(settings))
    found += [
        Finding(
            "settings",
            PROBLEM,
            problem,
            "change the setting it names (config/faxgate.example.toml explains each)",
        )
        for problem in preflight.settings_problems(settings)
    ]
    return found


def _folders(settings: Settings) -> list[Finding]:
    trouble = preflight.folder_problems(settings)
    if not trouble:
        others = len(settings.folders) + len(_inbound_folders(settings))
        also = f", and the {count(others, 'other folder')} it writes in" if others else ""
        return [
            Finding(
                "folders",
                OK,
                f"faxgate can write in its state directory {settings.state_dir}{also}",
            )
        ]
    fix = (
        "give the user faxgate runs as write access (under systemd, list folders outside "
        "/var/lib/faxgate in ReadWritePaths=), or point the setting at another folder"
    )
    return [Finding("folders", PROBLEM, problem, fix) for problem in trouble]


def _inbound_folders(settings: Settings) -> set[str]:
    inbound = settings.inbound
    return {f for f in [inbound.default_folder, *(r.folder for r in inbound.routes)] if f}


def _ports(settings: Settings, *, running: bool) -> list[Finding]:
    found = []
    for what, key, address in preflight.listeners(settings):
        if address.port == 0:
            found.append(Finding("port", OK, f"{what} ({key}) takes any free port"))
            continue
        problem = preflight.listen_problem(address)
        if problem is None:
            found.append(Finding("port", OK, f"{what} ({key}): {address} is free"))
        elif problem == preflight.PORT_IN_USE and running:
            found.append(
                Finding("port", OK, f"{what} ({key}): {address} is held by the running faxgate")
            )
        elif problem == preflight.PORT_IN_USE:
            found.append(
                Finding(
                    "port",
                    PROBLEM,
                    f"{what} cannot listen on {address}: another program listens there",
                    f"stop that program (`ss -ltnp 'sport = :{address.port}'` names it), or "
                    f"set {key} to a free port",
                )
            )
        else:
            found.append(
                Finding(
                    "port",
                    PROBLEM,
                    f"{what} cannot listen on {address}: {problem}",
                    f"set {key} to an address of this machine and a port it may use",
                )
            )
    return found


def _store(settings: Settings) -> Finding:
    if settings.store.url:
        return _postgres_store(settings)
    path = settings.database_path
    problem = preflight.store_problem(path)
    if problem is None:
        if path.exists():
            return Finding("store", OK, f"the store {path} can be read and written")
        return Finding("store", OK, f"the store {path} is made at the first start")
    fix = (
        "give the user faxgate runs as read and write access to it; if it is damaged, "
        "restore the last backup (docs/operations.md, Backups); one from a newer faxgate "
        "needs that version"
    )
    return Finding("store", PROBLEM, problem, fix)


def _postgres_store(settings: Settings) -> Finding:
    """A PostgreSQL store: the database answers, and its schema is one this faxgate knows."""
    where = settings.store.url
    problem = preflight.postgres_store_problem(settings)
    if problem is not None:
        if "newer faxgate" in problem:
            fix = "upgrade faxgate to the version of the other instances sharing the store"
        else:
            fix = (
                "start PostgreSQL, or correct store.url; the password goes in"
                " FAXGATE_STORE__PASSWORD or the credential store.password (docs/postgresql.md)"
            )
        return Finding("store", PROBLEM, problem, fix)
    return Finding(
        "store", OK, f"the PostgreSQL store {where} answers, with a schema this faxgate knows"
    )
