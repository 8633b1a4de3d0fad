"""Half of each page of deliveries kept free, for the claim's row versions.

A delivery is written three times: inserted, claimed (its lease: no indexed column changes) and
marked with its outcome (its status, which the claim's partial index depends on, so never a
heap-only update). With a fifth of each page free (0003), only about one claim in six found room
on its row's page for a heap-only tuple; the rest wrote a new version elsewhere and an entry in
every index. With half free, about half do, and a claim costs PostgreSQL 26 instead of 34 µs per
delivery (bench/README.md, "Outbound events"; PostgreSQL, "Heap-Only Tuples",
https://www.postgresql.org/docs/15/storage-hot.html). It applies to pages written from now on.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0003_delivery_indexes_and_fillfactor"),
    ]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE events_delivery SET (fillfactor = 50)",
            "ALTER TABLE events_delivery SET (fillfactor = 80)",
        ),
    ]
