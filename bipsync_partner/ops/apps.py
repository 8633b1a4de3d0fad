from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "bipsync_partner.ops"
    label = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        # Load the Celery app in every Django process (web included) so that tasks queued with
        # transaction.on_commit go to the configured broker, not to a default one.
        from bipsync_partner import celery  # noqa: F401
