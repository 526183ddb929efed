"""The server-rendered staff admin, compliance console and customer portal pages.

They call the same services and gateway as the REST API; there is no private path to data.
"""
