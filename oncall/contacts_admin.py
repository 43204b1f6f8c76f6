"""Contact methods and paging preferences in the admin."""
