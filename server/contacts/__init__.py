"""Contacts: the people a business deals with."""
