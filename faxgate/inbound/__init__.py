"""Inbound faxes: from the provider's callback to the people and folders that want them.

`routing` (which route a fax takes; pure), `compose` (the mail, the file names and the
metadata; pure), `receiver` (the callback handler: durable before the 200), `delivery`
(the notifier's handler: mail and folder). Kept free of imports here, so that the settings
can use the routing rules without pulling in the store.
"""
