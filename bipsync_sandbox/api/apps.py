from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "bipsync_sandbox.api"
    label = "sandbox_api"
    verbose_name = "Sandbox REST API (research documents, fields, content types)"
