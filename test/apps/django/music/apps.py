from django.apps import AppConfig


class MusicConfig(AppConfig):
    default_auto_field = "django.db.models.AutoField"
    name = "music"
