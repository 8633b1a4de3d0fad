from django.apps import AppConfig


class WritesConfig(AppConfig):
    name = "bipsync_partner.writes"
    label = "writes"
    verbose_name = "Writes to Bipsync"
