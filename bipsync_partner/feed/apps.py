from django.apps import AppConfig


class FeedConfig(AppConfig):
    name = "bipsync_partner.feed"
    label = "feed"
    verbose_name = "Change feed"
