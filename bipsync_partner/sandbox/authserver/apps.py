from django.apps import AppConfig


class AuthServerConfig(AppConfig):
    name = "bipsync_partner.sandbox.authserver"
    label = "sandbox_authserver"
    verbose_name = "Sandbox OAuth authorization server"
