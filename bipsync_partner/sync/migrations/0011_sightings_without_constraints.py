"""A sighting's two keys lose their database constraints.

Each constraint's check runs per inserted sighting and locks the row it points to (``SELECT ...
FOR KEY SHARE``, a write to that row's page and a WAL record): the document the same statement
has just inserted, and the run's own connection. Together they cost 13 % of the database's time
of a first sync (bench/README.md, "Research sync"). The page statement only ever writes a
sighting for an id it has just inserted or read, and for the run's own connection, so neither
check can fail there. Django's cascades still delete a document's and a connection's sightings,
and the engine's statements delete sightings before the documents they leave unseen.
"""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("connections", "0006_webhook_receiver"),
        ("sync", "0010_resources_graphql"),
    ]

    operations = [
        migrations.AlterField(
            model_name="documentsighting",
            name="connection",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="connections.connection",
            ),
        ),
        migrations.AlterField(
            model_name="documentsighting",
            name="document",
            field=models.ForeignKey(
                db_constraint=False,
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="sightings",
                to="sync.researchdocument",
            ),
        ),
    ]
