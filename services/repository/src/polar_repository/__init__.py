"""The repository service: repositories, issues, pull requests, rewards and their GitHub sync."""
