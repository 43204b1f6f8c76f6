"""Schedules, rotations, overrides and calendar tokens in the admin."""
