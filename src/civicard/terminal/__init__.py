"""The terminal client: what runs on a shop's or pharmacy's device (`civicard terminal …`).

`config` holds the device key and settings, `queue` the local SQLite file of signed receipts and
the downloaded bundle, `client` the offline redemption and the sync with the server. Nothing here
touches the server's database: the terminal speaks only HTTP, with every request signed.
"""
