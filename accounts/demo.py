"""The demo people that ``manage.py seed_demo_team`` creates and bin/run's Ready block names.

Plain constants, no Django: the development stack's launcher reads them before Django is set up.
The sandbox's ``seed_demo`` gives the admin and the member the same emails and passwords at Bipsync.
"""

from __future__ import annotations

TEAM_NAME = "Acme Research"
TEAM_SLUG = "acme"
ADMIN_EMAIL = "admin@acme.example"
MEMBER_EMAIL = "member@acme.example"
# Someone outside the demo team (admin of a team of their own): the demo team's pages answer them 404.
OUTSIDER_EMAIL = "outsider@globex.example"
OUTSIDER_TEAM_NAME = "Globex Capital"
OUTSIDER_TEAM_SLUG = "globex"
