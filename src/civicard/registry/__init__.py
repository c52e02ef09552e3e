"""Households, membership, need-related facts, the field allow-list and corrections."""
