from django.apps import AppConfig


class ControlConfig(AppConfig):
    name = "bipsync_sandbox.control"
    label = "sandbox_control"
    verbose_name = "Sandbox control (admin API, faults, counters, run-time settings)"
