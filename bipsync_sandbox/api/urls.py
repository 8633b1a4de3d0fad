"""REST routes, below a tenant's API base (the middleware maps it to the internal ``/_api/`` tree).

Included by the sandbox's root URLconf as ``path("_api/", include(...))``.
"""

from __future__ import annotations

from django.urls import path, re_path

from bipsync_sandbox.api import views

urlpatterns = [
    path("v1/research", views.research_list, name="api-research"),
    path("v1/contenttype", views.content_type_list, name="api-contenttype"),
    path("v1/field", views.field_list, name="api-field"),
    path("v2/research/note", views.note_create, name="api-note-create"),
    # Anything else under a tenant's API host: a JSON 404 (Bipsync documents 404 [doc]), not an
    # HTML page. The OAuth routes are matched before this include.
    re_path(r"", views.api_not_found),
]
