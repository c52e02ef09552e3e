"""Entitlements, vendors, terminals, redemptions and settlement."""
