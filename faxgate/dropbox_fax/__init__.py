"""The Dropbox Fax API v3 (part of the Dropbox Sign API v3), HelloFax v1's successor.

So far the pure parts: `models` (a tolerant reader of its JSON), `codes` (its status codes
in faxgate's terms), `errors` (failures sorted into v1's classes), `events` (callbacks and
their verification) and `ratelimit` (staying under the provider's rate). See
docs/providers.md for what is known of v3 and what is guessed.
"""
