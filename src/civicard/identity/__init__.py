"""Persons, cards, credentials, status lists, PINs and pseudonyms."""
