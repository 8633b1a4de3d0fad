from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "bipsync_partner.api"
    label = "api"
    verbose_name = "HTTP API"
