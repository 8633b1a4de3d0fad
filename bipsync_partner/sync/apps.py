from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "bipsync_partner.sync"
    label = "sync"
    verbose_name = "Research sync"

    def ready(self) -> None:
        # Scrape-time gauges for /metrics (the web process serves it, so they are registered
        # wherever Django starts, not only in workers). The receivers: a disconnect removes
        # what only that connection could see (bipsync_partner.sync.exposure).
        from bipsync_partner.ops.metrics import LiveGauges
        from bipsync_partner.sync import (
            connection_hooks,  # noqa: F401  (connects the receivers)
            receivers,  # noqa: F401
        )
        from bipsync_partner.sync.gauges import sync_gauges

        if sync_gauges not in LiveGauges.sources:
            LiveGauges.sources.append(sync_gauges)
