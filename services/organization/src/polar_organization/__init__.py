"""The organization service: users, their GitHub accounts, organizations and memberships."""
