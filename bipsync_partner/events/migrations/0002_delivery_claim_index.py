"""The claim's index: one endpoint's pending deliveries in the order they are attempted.

Built CONCURRENTLY, so that deliveries keep being recorded and claimed while it builds on a
large outbox (hence ``atomic = False``).
"""

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("events", "0001_events_outbox"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="delivery",
            index=models.Index(
                condition=models.Q(("status", "pending")),
                fields=["endpoint", "next_attempt_at", "id"],
                name="events_delivery_claim",
            ),
        ),
    ]
