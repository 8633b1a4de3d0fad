from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "bipsync_partner.connections"
    label = "connections"
    verbose_name = "Bipsync connections"

    def ready(self) -> None:
        from bipsync_partner.connections import (  # noqa: F401  (registers checks)
            checks,
            crypto,
            departures,
        )
        from bipsync_partner.connections.gauges import connection_gauges
        from bipsync_partner.ops.metrics import LiveGauges

        # A malformed key must stop every process (web, worker, beat, commands) at start-up with a
        # sentence, not surface later as a failed refresh.
        crypto.validate_settings()
        # Scrape-time gauges for /metrics (the web process serves it, so they are registered
        # wherever Django starts, not only in workers).
        if connection_gauges not in LiveGauges.sources:
            LiveGauges.sources.append(connection_gauges)
