from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "bipsync_partner.connections"
    label = "connections"
    verbose_name = "Bipsync connections"
