"""The account's fax lines, their users, and the area codes on sale: a part of SandboxService."""

from __future__ import annotations

from faxgate.sandbox import areacodes
from faxgate.sandbox.forms import RequestError
from faxgate.sandbox.state import SandboxStore


class AccountLines:
    guid: str
    _store: SandboxStore

    def lines(self) -> list[str]:
        return self._store.lines(self.guid)

    def area_codes(self, state_code: str | None) -> list[int]:
        if not state_code or not state_code.strip():
            raise RequestError(400, "Missing StateCode: give a two-letter US state code")
        codes = areacodes.offered(state_code, self._store.all_line_numbers())
        if codes is None:
            raise RequestError(400, f"Unknown StateCode {state_code!r}")
        return codes

    def buy_line(self, raw_area_code: str | None) -> str:
        raw = (raw_area_code or "").strip()
        if not raw:
            raise RequestError(400, "Missing AreaCode: choose one from /AreaCodes")
        if not (raw.isascii() and raw.isdigit() and len(raw) == 3):
            raise RequestError(400, f"Invalid AreaCode {raw!r}: give three digits")
        area_code = int(raw)
        if not areacodes.is_sold(area_code):
            raise RequestError(
                400, f"Area code {area_code} is not available; /AreaCodes lists those that are"
            )
        with self._store.transaction():
            number = areacodes.first_free(area_code, self._store.all_line_numbers())
            if number is None:
                raise RequestError(
                    400,
                    f"No fax numbers are free in area code {area_code}; choose another area"
                    " code from /AreaCodes",
                )
            self._store.add_line(self.guid, number)
        return number

    def line_bought_at(self, number: str) -> float:
        bought_at = self._store.line_bought_at(self.guid, number)
        if bought_at is None:
            raise RequestError(404, f"Fax line {number} not found on this account")
        return bought_at

    def line_users(self, number: str) -> list[str]:
        return self._store.line_users(number)

    def set_line_user(self, number: str, user: str, *, present: bool) -> None:
        """Give a user the use of one of the account's lines, or take it away."""
        with self._store.transaction():
            self.line_bought_at(number)
            self._store.set_line_user(number, user, present=present)

    def delete_line(self, number: str) -> None:
        with self._store.transaction():
            if not self._store.remove_line(self.guid, number):
                raise RequestError(404, f"Fax line {number} not found on this account")
