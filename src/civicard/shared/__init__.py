"""Ids, clock, money and domain errors shared by every package."""
