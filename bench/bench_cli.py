"""How long the everyday commands take from the shell, beside `python -c pass`.

Run from the repository: `.venv/bin/python bench/bench_cli.py [--rounds 15]`.

Each command runs as an operator types it: the `faxgate` script next to this Python, a
fresh process each time, its output thrown away, in a temporary working directory with
FAXGATE_STATE_DIR pointing at a state directory that holds 200 jobs (in several states)
and 20 received faxes, so `status` and `inbox` have something to read. They run without a
settings file (built-in defaults), and `status` and `config check` again with the example
settings file (config/faxgate.example.toml), as an installation has one. The baseline is
the bare interpreter (`python -c pass`, same Python, same environment) measured in the
same rounds: every round runs each command once, so a noisy spell hits all alike.

Wall time per run: the median and the slowest of the rounds, and the median as a multiple
of the baseline's; beside it the CPU time (user and system) of a run, which other work on
the machine changes far less than the wall time. Bytecode is compiled once into a cache
of the bench's own (PYTHONPYCACHEPREFIX), as an installed faxgate has it, whatever
PYTHONDONTWRITEBYTECODE says.

To measure another checkout (the figures before a change): `make .venv/.installed` in
that checkout, then run this file with that checkout's Python,
`/path/to/other/.venv/bin/python bench/bench_cli.py`.
The figures go to bench/README.md (section "Command line").
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from _common import banner, fax_number, one_page_pdf, ratio, table

from faxgate.clock import utc_now
from faxgate.domain.inbound import NewInboundFax, ReceivedDocument
from faxgate.domain.jobs import Intake, JobState
from faxgate.store import NewDocument, NewJob, Store
from faxgate.store.spool import Spool

JOBS = 200
INBOUND = 20
# Goals, wall seconds per run on a 2-core machine.
GOALS = {
    "--version": 0.15,
    "status": 0.35,
    "inbox": 0.35,
    "config check": 0.35,
    "status, example settings file": 0.35,
    "config check, example settings file": 0.35,
}
COMMANDS: dict[str, list[str]] = {
    "--version": ["--version"],
    "status": ["status"],
    "status --json": ["status", "--json"],
    "inbox": ["inbox"],
    "config check": ["config", "check"],
}
# Run again with a settings file as an installation has one: the example file, every
# section written out (FAXGATE_STATE_DIR still names the bench's state).
EXAMPLE_SETTINGS = Path(__file__).resolve().parent.parent / "config" / "faxgate.example.toml"
WITH_SETTINGS_FILE: dict[str, list[str]] = {
    "status, example settings file": ["status"],
    "config check, example settings file": ["config", "check"],
}


def fill_state(state_dir: Path) -> None:
    """A store with jobs in several states and received faxes, as a working faxgate has."""
    spool = Spool(state_dir / "spool")
    spooled = spool.store_bytes(one_page_pdf(), suffix=".pdf")
    document = NewDocument("letter.pdf", spooled, "application/pdf")
    with Store.open(state_dir / "faxgate.sqlite3") as store:
        jobs = store.create_jobs(
            [
                NewJob(to_number=fax_number(i), intake=Intake.CLI, documents=[document])
                for i in range(JOBS)
            ]
        )
        for job in jobs[: JOBS // 4]:
            store.transition(job.id, JobState.SUBMITTING, expect=JobState.QUEUED, detail="bench")
        for job in jobs[: JOBS // 8]:
            store.transition(
                job.id,
                JobState.UNCERTAIN,
                expect=JobState.SUBMITTING,
                detail="bench",
                reason="the provider's list cannot tell",
            )
        received = spool.store_bytes(one_page_pdf(), suffix=".pdf")
        for n in range(INBOUND):
            store.record_inbound(
                NewInboundFax(
                    provider_guid=f"{n:040x}",
                    to_number="+14155550100",
                    from_number=fax_number(n),
                    pages=1,
                    arrived_at=utc_now() - timedelta(minutes=n),
                    route="default",
                    document=ReceivedDocument(
                        path=received.path,
                        size=received.size,
                        sha256=received.sha256,
                        content_type="application/pdf",
                    ),
                )
            )


def faxgate_command() -> list[str]:
    """The `faxgate` script beside this Python (what an operator runs), else `-m faxgate`."""
    script = Path(sys.executable).with_name("faxgate")
    return [str(script)] if script.exists() else [sys.executable, "-m", "faxgate"]


def time_once(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run."""
    cpu_before = _children_cpu()
    began = time.perf_counter()
    done = subprocess.run(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    seconds = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.decode()}")
    return seconds, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="the CLI's start-up, beside python -c pass")
    parser.add_argument("--rounds", type=int, default=15, help="runs of each command (15)")
    args = parser.parse_args(argv)

    banner(
        f"bench_cli: wall time of each command, a fresh process per run, {args.rounds} rounds, "
        "beside python -c pass"
    )
    faxgate = faxgate_command()
    runs: dict[str, list[tuple[float, float]]] = {
        name: [] for name in ["python -c pass", *COMMANDS, *WITH_SETTINGS_FILE]
    }
    with tempfile.TemporaryDirectory(prefix="faxgate-bench-cli-") as root:
        workdir = Path(root)
        fill_state(workdir / "var")
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("FAXGATE_") and name != "CREDENTIALS_DIRECTORY"
        }
        env["FAXGATE_STATE_DIR"] = str(workdir / "var")
        # Compiled once and cached, as an installed faxgate is, even where the environment
        # says not to write bytecode (then every run would compile every module afresh).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(workdir / "pycache")
        with_file = env | {"FAXGATE_CONFIG": str(EXAMPLE_SETTINGS)}
        argvs = (
            {"python -c pass": ([sys.executable, "-c", "pass"], env)}
            | {name: ([*faxgate, *command], env) for name, command in COMMANDS.items()}
            | {
                name: ([*faxgate, *command], with_file)
                for name, command in WITH_SETTINGS_FILE.items()
            }
        )
        for command, command_env in argvs.values():  # once each first: caches warm
            time_once(command, workdir, command_env)
        for _ in range(args.rounds):
            for name, (command, command_env) in argvs.items():
                runs[name].append(time_once(command, workdir, command_env))

    baseline = statistics.median(wall for wall, _ in runs["python -c pass"])
    rows = []
    for name, measured in runs.items():
        walls = [wall for wall, _ in measured]
        median = statistics.median(walls)
        cpu = statistics.median(cpu for _, cpu in measured)
        goal = GOALS.get(name)
        rows.append(
            [
                name if name == "python -c pass" else f"faxgate {name}",
                f"{median * 1000:.0f} ms",
                f"{max(walls) * 1000:.0f} ms",
                ratio(median, baseline),
                f"{cpu * 1000:.0f} ms",
                f"{goal * 1000:.0f} ms" if goal else "-",
                ("met" if median <= goal else "NOT met") if goal else "-",
            ]
        )
    headers = ["command", "median", "slowest", "x python -c pass", "CPU (median)", "goal", ""]
    print(table(headers, rows))
    print(f"\nstate: {JOBS} jobs, {INBOUND} received faxes; command: {' '.join(faxgate)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
