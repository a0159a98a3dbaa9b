"""The command line: parses commands, calls the core, prints."""


def main(argv: list[str] | None = None) -> int:
    return 0
