"""The provider simulation the sandboxes share: a fax's life, its outcome and timing,
removal, callbacks and their retries, faults, inbound faxes, and the SQLite state.

No API's wire format lives here: each face (faxgate.hellofax.sandbox for v1,
faxgate.dropbox_fax.sandbox for v3) gives its routes and a `Wire` for its callbacks.
"""
