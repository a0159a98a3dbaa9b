"""http.public_url: does a request through the public address reach this faxgate?"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from faxgate.doctor.findings import OK, PROBLEM, SKIPPED, Finding
from faxgate.settings import Settings

PUBLIC_TIMEOUT: Final = 10.0  # seconds for the request through the public address


async def check_public_url(settings: Settings) -> Finding:
    public = settings.http.public_url
    if not public:
        why = "http.public_url is not set"
        if settings.provider.kind == "sandbox":
            why += " (a local sandbox reaches faxgate at http.listen)"
        return Finding("public URL", SKIPPED, why)
    url = f"{public}/healthz"
    forward = (
        f"make the reverse proxy forward {public} to faxgate's http.listen "
        f"({settings.http.listen}), and check that faxgate is running"
    )
    try:
        async with httpx.AsyncClient(timeout=PUBLIC_TIMEOUT, follow_redirects=False) as http:
            answer = await http.get(url)
    except httpx.HTTPError as exc:
        host = urlsplit(public).hostname
        return Finding(
            "public URL",
            PROBLEM,
            f"{url} does not answer: {str(exc) or type(exc).__name__}",
            f"check that {host} resolves to this faxgate's reverse proxy, that its "
            f"certificate is valid and the firewall lets the provider in; {forward}",
        )
    if answer.is_redirect:
        return Finding(
            "public URL",
            PROBLEM,
            f"{url} answers with a redirect to {answer.headers.get('location', '?')}: the "
            "provider's callbacks are POSTs, which are not reliably followed across one",
            "set http.public_url to the address the redirect leads to",
        )
    report = _health_report(answer)
    if report is None:
        return Finding(
            "public URL", PROBLEM, f"{url} answers {answer.status_code}, not faxgate", forward
        )
    if report.get("status") == "ok":
        return Finding("public URL", OK, f"{url} answers: faxgate, healthy")
    said = "; ".join(str(problem) for problem in report.get("problems", [])) or "no reason given"
    return Finding(
        "public URL",
        PROBLEM,
        f"{url} answers, but faxgate reports problems: {said}",
        "see faxgate's log (journalctl -u faxgate) and `faxgate status`",
    )


def _health_report(answer: httpx.Response) -> dict[str, Any] | None:
    """faxgate's /healthz body (200 healthy, 503 not), or None for anything else."""
    if answer.status_code not in (200, 503):
        return None
    try:
        body = answer.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("status") in ("ok", "unhealthy"):
        return body
    return None
