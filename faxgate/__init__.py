"""faxgate: email and hot folders to fax, through the HelloFax API."""

__version__ = "0.1.0"
