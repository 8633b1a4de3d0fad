from django.apps import AppConfig


class WritesConfig(AppConfig):
    name = "bipsync_partner.writes"
    label = "writes"
    verbose_name = "Writes to Bipsync"

    def ready(self) -> None:
        from bipsync_partner.writes import connection_hooks  # noqa: F401  (connects the receivers)
