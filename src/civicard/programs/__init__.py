"""Benefit programs: rule files, validation, evaluation, cycles, decisions, appeals."""
