from django.apps import AppConfig


class EventsConfig(AppConfig):
    name = "bipsync_partner.events"
    label = "events"
    verbose_name = "Outbound events (webhooks)"

    def ready(self) -> None:
        from bipsync_partner.events import receivers  # noqa: F401  (connects the receivers)
