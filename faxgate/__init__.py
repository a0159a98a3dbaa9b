"""faxgate: email and hot folders to fax, through HelloFax v1 or the Dropbox Fax API v3."""

__version__ = "0.1.0"
