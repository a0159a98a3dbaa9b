"""A Dropbox Fax API v3 sandbox: the v3 API over real HTTP, with no account needed.

The same simulation as the HelloFax v1 sandbox (faxgate.sandbox), with v3's routes, auth,
error shape, rate limit and signed events. See docs/sandbox.md.
"""

from faxgate.dropbox_fax.sandbox.inject import inject_inbound
from faxgate.dropbox_fax.sandbox.server import DropboxFaxSandbox
from faxgate.sandbox.settings import DEFAULT_API_KEY

__all__ = ["DEFAULT_API_KEY", "DropboxFaxSandbox", "inject_inbound"]
