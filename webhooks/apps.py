from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from sends.signals import event_recorded
        from webhooks.delivery import on_event_recorded

        event_recorded.connect(on_event_recorded, dispatch_uid="webhooks.fan_out")
