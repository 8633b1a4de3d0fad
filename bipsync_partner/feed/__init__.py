"""The change feed: what changed in a team's synced tables, in commit order, for the API and
the webhooks."""
