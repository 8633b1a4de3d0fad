"""Research entries when what the team's API keys may read changes through the sightings alone:
a document a member's own connection brought becomes the team's when a team-wide connection sees
it too (``changed``), and stops being the team's when the last team-wide connection that saw it no
longer does (``deleted``); see ``triggers.track_team_visibility``."""

from django.db import migrations

from bipsync_partner.feed import triggers


class Migration(migrations.Migration):
    dependencies = [
        ("feed", "0002_feed_resources"),
        ("sync", "0010_resources_graphql"),
        ("connections", "0006_webhook_receiver"),
    ]

    operations = [
        # The kinds that were team-wide when this was written (connections/kinds.py).
        triggers.track_team_visibility(("service_account", "client_credentials")),
    ]
