"""The feed written from the resources read through GraphQL (bipsync_partner/sync/resources.py)
as well: every one of their tables has the columns the triggers read (``id``, ``team_id``,
``tenant``, ``bipsync_id``, ``content_hash``, ``deleted_at``: ``TenantRow``), so each is one
``track``. An entry's resource is the resource's name, as the sync's progress names it."""

from django.db import migrations

from bipsync_partner.feed import triggers


class Migration(migrations.Migration):
    dependencies = [
        ("feed", "0001_feed_changes"),
        ("sync", "0010_resources_graphql"),
    ]

    operations = [
        triggers.track("sync_synceduser", "users"),
        triggers.track("sync_syncedclassification", "classifications"),
        triggers.track("sync_syncedcategory", "categories"),
        triggers.track("sync_syncedcontact", "contacts"),
        triggers.track("sync_syncedproject", "projects"),
        triggers.track("sync_notebody", "note_bodies"),
        triggers.track("sync_syncedattachment", "attachments"),
    ]
