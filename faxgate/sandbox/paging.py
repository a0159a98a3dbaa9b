"""A page of a list: which items it holds and how many pages there are."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Paging:
    page: int
    page_size: int
    total: int
    first: int = 0  # the first page's number: 0 on v1 (GUESSED), 1 on v3

    @property
    def num_pages(self) -> int:
        return max(1, math.ceil(self.total / self.page_size))

    @property
    def start(self) -> int:
        return (self.page - self.first) * self.page_size

    @property
    def end(self) -> int:
        """Exclusive, like a slice."""
        return (
            min(self.total, self.start + self.page_size) if self.start < self.total else self.start
        )

    @property
    def last_page(self) -> int:
        return self.num_pages - 1 + self.first
