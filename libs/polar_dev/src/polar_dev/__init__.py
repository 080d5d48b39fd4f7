"""Dev and test tooling: embedded infra, cluster runner, pytest plugin, fake GitHub."""
