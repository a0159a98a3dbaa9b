"""The provider's limits, as documented (or, where marked, as stated intent)."""

MAX_PENDING = 200  # transmissions pending (P) or transmitting (T) at once; then 429
MAX_FILES_PER_SEND = 10  # GUESSED: refused at once
MAX_BYTES_PER_SEND = 30 * 1024 * 1024  # GUESSED: all files of one send together
MAX_PAGES = 200  # GUESSED: more fails after conversion with E/U
DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
