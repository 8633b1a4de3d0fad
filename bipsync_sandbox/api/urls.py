"""REST routes, below a tenant's API base (the middleware maps it to the internal ``/_api/`` tree).

Included by the sandbox's root URLconf as ``path("_api/", include(...))``.
"""

from __future__ import annotations

from django.urls import path, re_path

from bipsync_sandbox.api import attachments, downloads, ingest, notes, views
from bipsync_sandbox.api.graph.view import graphql_endpoint

urlpatterns = [
    path("v1/research", views.research_list, name="api-research"),
    path("v1/graphql", graphql_endpoint, name="api-graphql"),
    path("v1/contenttype", views.content_type_list, name="api-contenttype"),
    path("v1/field", views.field_list, name="api-field"),
    path("v2/research/note", notes.note_collection, name="api-note-create"),
    path("v2/research/note/<str:note_id>", notes.note_detail, name="api-note"),
    path(
        "v2/research/note/<str:note_id>/attachment",
        attachments.attachment_collection,
        name="api-note-attachments",
    ),
    path(
        "v2/research/note/<str:note_id>/attachment/<str:attachment_id>/content",
        attachments.attachment_content,
        name="api-note-attachment-content",
    ),
    path(downloads.route(), downloads.attachment_download, name="api-note-attachment-download"),
    path("v3/ingest/<str:source>/<str:value>", ingest.ingest, name="api-ingest"),
    # Anything else under a tenant's API host: a JSON 404 (Bipsync documents 404 [doc]), not an
    # HTML page. The OAuth routes are matched before this include.
    re_path(r"", views.api_not_found),
]
