"""US area codes by state, and the pool of numbers the sandbox can sell in each.

The table is the real North American numbering plan for the 50 states and DC. Like the
provider, the sandbox has no numbers in some area codes (here: the newest overlays), and
`/AreaCodes` lists only codes with a number still free.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

AREA_CODES_BY_STATE: Mapping[str, tuple[int, ...]] = {
    "AL": (205, 251, 256, 334, 659, 938),
    "AK": (907,),
    "AZ": (480, 520, 602, 623, 928),
    "AR": (479, 501, 870),
    "CA": (209, 213, 279, 310, 323, 341, 350, 408, 415, 424, 442, 510, 530, 559, 562, 619,
           626, 628, 650, 657, 661, 669, 707, 714, 747, 760, 805, 818, 820, 831, 840, 858,
           909, 916, 925, 949, 951),
    "CO": (303, 719, 720, 970, 983),
    "CT": (203, 475, 860, 959),
    "DC": (202, 771),
    "DE": (302,),
    "FL": (239, 305, 321, 352, 386, 407, 448, 561, 656, 689, 727, 754, 772, 786, 813, 850,
           863, 904, 941, 954),
    "GA": (229, 404, 470, 478, 678, 706, 762, 770, 912, 943),
    "HI": (808,),
    "IA": (319, 515, 563, 641, 712),
    "ID": (208, 986),
    "IL": (217, 224, 309, 312, 331, 447, 464, 618, 630, 708, 730, 773, 779, 815, 847, 861,
           872),
    "IN": (219, 260, 317, 463, 574, 765, 812, 930),
    "KS": (316, 620, 785, 913),
    "KY": (270, 364, 502, 606, 859),
    "LA": (225, 318, 337, 504, 985),
    "MA": (339, 351, 413, 508, 617, 774, 781, 857, 978),
    "MD": (227, 240, 301, 410, 443, 667),
    "ME": (207,),
    "MI": (231, 248, 269, 313, 517, 586, 616, 679, 734, 810, 906, 947, 989),
    "MN": (218, 320, 507, 612, 651, 763, 952),
    "MO": (314, 417, 557, 573, 636, 660, 816, 975),
    "MS": (228, 601, 662, 769),
    "MT": (406,),
    "NC": (252, 336, 472, 704, 743, 828, 910, 919, 980, 984),
    "ND": (701,),
    "NE": (308, 402, 531),
    "NH": (603,),
    "NJ": (201, 551, 609, 640, 732, 848, 856, 862, 908, 973),
    "NM": (505, 575),
    "NV": (702, 725, 775),
    "NY": (212, 315, 329, 332, 347, 363, 516, 518, 585, 607, 624, 631, 646, 680, 716, 718,
           838, 845, 914, 917, 929, 934),
    "OH": (216, 220, 234, 283, 326, 330, 380, 419, 436, 440, 513, 567, 614, 740, 937),
    "OK": (405, 539, 572, 580, 918),
    "OR": (458, 503, 541, 971),
    "PA": (215, 223, 267, 272, 412, 445, 484, 570, 582, 610, 717, 724, 814, 835, 878),
    "RI": (401,),
    "SC": (803, 821, 839, 843, 854, 864),
    "SD": (605,),
    "TN": (423, 615, 629, 731, 865, 901, 931),
    "TX": (210, 214, 254, 281, 325, 346, 361, 409, 430, 432, 469, 512, 682, 713, 726, 737,
           806, 817, 830, 832, 903, 915, 936, 940, 945, 956, 972, 979),
    "UT": (385, 435, 801),
    "VA": (276, 434, 540, 571, 686, 703, 757, 804, 826, 948),
    "VT": (802,),
    "WA": (206, 253, 360, 425, 509, 564),
    "WI": (262, 274, 353, 414, 534, 608, 715, 920),
    "WV": (304, 681),
    "WY": (307,),
}  # fmt: skip

# Overlays opened since 2015: the sandbox, like the provider, has no numbers there.
NO_NUMBERS_IN: frozenset[int] = frozenset(
    {227, 279, 283, 326, 329, 341, 350, 363, 364, 436, 447, 448, 464, 472, 557, 582, 624,
     656, 659, 686, 689, 730, 743, 821, 826, 835, 839, 840, 854, 861, 945, 948, 975, 983,
     986}
)  # fmt: skip

# Each area code holds 100 numbers: exchange 555, lines 0100-0199 (reserved for fiction,
# so a sandbox number can never ring a real fax machine).
POOL_EXCHANGE = "555"
POOL_FIRST_LINE = 100
POOL_SIZE = 100


def state_area_codes(state_code: str) -> tuple[int, ...] | None:
    """All area codes of a state (two-letter code, any case); None for an unknown state."""
    return AREA_CODES_BY_STATE.get(state_code.strip().upper())


def is_sold(area_code: int) -> bool:
    """Whether the sandbox sells numbers in this area code at all."""
    return area_code not in NO_NUMBERS_IN and any(
        area_code in codes for codes in AREA_CODES_BY_STATE.values()
    )


def pool(area_code: int) -> list[str]:
    """Every number the sandbox can sell in an area code, lowest first."""
    return [
        f"1{area_code}{POOL_EXCHANGE}{line:04d}"
        for line in range(POOL_FIRST_LINE, POOL_FIRST_LINE + POOL_SIZE)
    ]


def first_free(area_code: int, taken: Iterable[str]) -> str | None:
    """The lowest number of the area code's pool not in `taken`, or None when all are."""
    used = set(taken)
    return next((number for number in pool(area_code) if number not in used), None)


def offered(state_code: str, taken: Iterable[str]) -> list[int] | None:
    """The area codes of a state with a number still free; None for an unknown state."""
    codes = state_area_codes(state_code)
    if codes is None:
        return None
    used = set(taken)
    return [code for code in codes if is_sold(code) and first_free(code, used) is not None]
