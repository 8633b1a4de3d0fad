from django.apps import AppConfig


class IdentityConfig(AppConfig):
    name = "bipsync_sandbox.identity"
    label = "sandbox_identity"
    verbose_name = "Sandbox identity"
