"""Duplicate-enrollment detection."""
