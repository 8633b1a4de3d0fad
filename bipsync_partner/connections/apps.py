from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "bipsync_partner.connections"
    label = "connections"
    verbose_name = "Bipsync connections"

    def ready(self) -> None:
        from bipsync_partner.connections import checks, crypto  # noqa: F401  (registers checks)

        # A malformed key must stop every process (web, worker, beat, commands) at start-up with a
        # sentence, not surface later as a failed refresh.
        crypto.validate_settings()
