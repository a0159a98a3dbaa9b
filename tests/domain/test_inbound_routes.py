"""Routing rules for inbound faxes, and their settings: pure, no daemon."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from faxgate.domain.inbound_routes import (
    DEFAULT_ROUTE,
    DeliveryTarget,
    RoutingTable,
    check_address,
    check_pattern_syntax,
    parse_pattern,
)
from faxgate.domain.numbers import NumberPolicy
from faxgate.settings import InboundSettings, Settings, masked_dump

US = NumberPolicy(default_region="US")
SALES_LINE = "+14155550100"
SUPPORT_LINE = "+14155550101"


def table(*rules: dict[str, Any], policy: NumberPolicy = US, **default: Any) -> RoutingTable:
    inbound = InboundSettings(routes=list(rules), **default)
    return RoutingTable.build(
        inbound.routes,
        default_email=inbound.default_email,
        default_folder=inbound.default_folder,
        policy=policy,
    )


@pytest.mark.parametrize(
    ("written", "number", "matches"),
    [
        ("+1 415 555 0100", "+14155550100", True),
        ("(415) 555-0100", "+14155550100", True),  # national, in the default region
        ("14155550100", "+14155550100", True),  # the provider's digits
        ("+1 415 555 0100", "+14155550101", False),
        ("+1415555*", "+14155550199", True),
        ("+1415555*", "+14165550199", False),
        ("+1 415 555 01??", "+14155550142", True),
        ("+1 415 555 01??", "+141555501420", False),
        ("*0100", "+14155550100", True),
        ("*0100", "+14155550101", False),
        ("+44*", "+442079460958", True),
        ("0044*", "+442079460958", True),
        ("*", "+33140000000", True),
        ("*", None, False),  # an unknown sender matches no pattern
        ("+1 415 555 0100", None, False),
    ],
)
def test_numbers_and_patterns(written: str, number: str | None, matches: bool) -> None:
    assert parse_pattern(written, US).matches(number) is matches


def test_a_national_number_is_read_in_the_default_region() -> None:
    assert parse_pattern("020 7946 0958", NumberPolicy(default_region="GB")).exact == (
        "+442079460958"
    )
    # The same digits under the US rules are no number at all.
    with pytest.raises(ValueError, match="020 7946 0958"):
        table({"to": "020 7946 0958", "email": "a@example.com"}, policy=US)


@pytest.mark.parametrize(
    ("written", "reason"),
    [
        ("1415*", "international form"),
        ("+1415x*", "only digits"),
        ("+*a", "only digits"),
        ("+", "not a fax number"),
        ("", "empty"),
        ("sales line", "not a fax number"),
    ],
)
def test_bad_patterns_are_refused_with_a_reason(written: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_pattern_syntax(written)


def test_premium_numbers_may_be_named_in_a_rule() -> None:
    # Dialling policy does not apply: a rule only compares numbers.
    assert parse_pattern("+1 900 555 0100", US).exact == "+19005550100"


def test_first_matching_rule_wins_else_the_default() -> None:
    routes = table(
        {"name": "sales", "to": SALES_LINE, "email": "sales@example.com", "folder": "/srv/s"},
        {"name": "boss", "from": "+1212555*", "email": ["boss@example.com"]},
        {"name": "sales-again", "to": SALES_LINE, "email": "never@example.com"},
        default_email="desk@example.com",
        default_folder="/srv/desk",
    )
    assert routes.route(SALES_LINE, "+13105550111").name == "sales"
    assert routes.route(SALES_LINE, "+12125550199").name == "sales"  # first match
    assert routes.route(SUPPORT_LINE, "+12125550199").name == "boss"
    assert routes.route(SUPPORT_LINE, "+13105550111").name == DEFAULT_ROUTE
    assert routes.route(SUPPORT_LINE, None).name == DEFAULT_ROUTE
    assert routes.route(SALES_LINE, "+13105550111").targets() == [
        DeliveryTarget("email", recipients=("sales@example.com",)),
        DeliveryTarget("folder", folder="/srv/s"),
    ]
    assert routes.default.targets() == [
        DeliveryTarget("email", recipients=("desk@example.com",)),
        DeliveryTarget("folder", folder="/srv/desk"),
    ]


def test_a_rule_on_line_and_sender_needs_both() -> None:
    routes = table(
        {"to": [SALES_LINE, SUPPORT_LINE], "from": ["+1212*", "+1310*"], "email": "x@example.com"}
    )
    assert routes.route(SUPPORT_LINE, "+13105550111").name == "route 1"
    assert routes.route(SALES_LINE, "+12125550111").name == "route 1"
    assert routes.route(SALES_LINE, "+16505550111").name == DEFAULT_ROUTE
    assert routes.route("+14155550102", "+12125550111").name == DEFAULT_ROUTE
    assert routes.default.targets() == []  # nothing configured: delivered nowhere


def test_a_rule_without_from_takes_unknown_senders() -> None:
    routes = table({"name": "any", "to": SALES_LINE, "email": "x@example.com"})
    assert routes.route(SALES_LINE, None).name == "any"


def test_routes_in_settings_read_one_or_many_and_dump_as_written() -> None:
    settings = Settings(
        inbound={
            "routes": [{"to": "+1 415 555 0100", "from": "+1212*", "email": "a@example.com"}],
            "default_email": "desk@example.com",
        }
    )
    route = settings.inbound.routes[0]
    assert route.to == ["+1 415 555 0100"]
    assert route.from_ == ["+1212*"]
    dumped = masked_dump(settings)["inbound"]
    assert dumped["routes"][0]["from"] == ["+1212*"]
    assert dumped["default_email"] == ["desk@example.com"]
    assert Settings(inbound=dumped).inbound == settings.inbound  # the dump reads back


@pytest.mark.parametrize(
    ("inbound", "message"),
    [
        ({"routes": [{"to": "+1415*"}]}, "email recipients, a folder, or both"),
        ({"routes": [{"to": "1415*", "email": "a@example.com"}]}, "international form"),
        ({"routes": [{"email": "not an address"}]}, "not an email address"),
        ({"routes": [{"folder": "relative/dir"}]}, "absolute path"),
        ({"routes": [{"email": "a@example.com", "when": "always"}]}, "Extra inputs"),
        ({"default_folder": "in"}, "absolute path"),
        ({"default_email": ["a@example.com", "b"]}, "not an email address"),
    ],
)
def test_bad_routes_are_refused_at_load(inbound: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(inbound=inbound)


@pytest.mark.parametrize(
    "address", ["a@example.com", "Sales <sales@example.com>", "x.y+fax@sub.example.org"]
)
def test_addresses(address: str) -> None:
    assert check_address(address) == address


@pytest.mark.parametrize("address", ["a", "a@", "@b", "a@b c", "a@b\nBcc: c@d", "a@b, c@d"])
def test_bad_addresses(address: str) -> None:
    with pytest.raises(ValueError, match="not an email address"):
        check_address(address)
