"""Fewer row versions to index per delivery, and room for the claim's own.

- The two foreign keys lose their own indexes: the unique (event, endpoint) already serves
  look-ups by event, and the delivery log's (endpoint, -created) those by endpoint.
- The table keeps a fifth of each page free (``fillfactor``), so that a claim, which changes
  only the lease (no indexed column), writes its row version beside the old one as a
  heap-only tuple, with no index entry at all (PostgreSQL, "Heap-Only Tuples",
  https://www.postgresql.org/docs/15/storage-hot.html). It applies to pages written from now on.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0002_delivery_claim_index"),
    ]

    operations = [
        migrations.AlterField(
            model_name="delivery",
            name="endpoint",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="events.endpoint",
            ),
        ),
        migrations.AlterField(
            model_name="delivery",
            name="event",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="events.event",
            ),
        ),
        migrations.RunSQL(
            "ALTER TABLE events_delivery SET (fillfactor = 80)",
            "ALTER TABLE events_delivery RESET (fillfactor)",
        ),
    ]
