from django.apps import AppConfig


class SyncConfig(AppConfig):
    name = "bipsync_partner.sync"
    label = "sync"
    verbose_name = "Research sync"
