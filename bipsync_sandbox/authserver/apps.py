from django.apps import AppConfig


class AuthServerConfig(AppConfig):
    name = "bipsync_sandbox.authserver"
    label = "sandbox_authserver"
    verbose_name = "Sandbox OAuth authorization server"
