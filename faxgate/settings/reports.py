"""The settings of confirmation reports (see docs/reports.md)."""

from __future__ import annotations

from typing import Literal

from faxgate.settings.fields import _Section


class ReportSettings(_Section):
    """A one-page PDF per fax, like a fax machine's transmission report, attached to the
    reply mail and written beside a hot folder's NAME.result.json."""

    # "with_image": with a reduced image of the first page as sent; "without_image": the
    # facts only (for health data: the report then shows nothing of the contents); "off":
    # no report. The whole document as well: [smtp] attach_document.
    confirmation: Literal["with_image", "without_image", "off"] = "off"
