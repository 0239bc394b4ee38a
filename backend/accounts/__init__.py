"""Organizations, accounts, staff creation and client invites."""
