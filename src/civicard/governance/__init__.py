"""Governance: actions one staff member may not take alone (four-eyes approvals)."""
