"""The on-call admin: schedules with their layers and overrides (``oncall.schedules_admin``), and
people's contact methods and paging preferences (``oncall.contacts_admin``)."""

from oncall import contacts_admin, schedules_admin  # noqa: F401 — each registers its ModelAdmins
