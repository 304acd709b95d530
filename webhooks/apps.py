from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from fluxomail import hotcache
        from sends.signals import event_recorded
        from webhooks.delivery import on_event_recorded

        event_recorded.connect(on_event_recorded, dispatch_uid="webhooks.fan_out")
        # An endpoint saved in this process gets the next event's fan-out at once.
        endpoint = self.get_model("Endpoint")
        post_save.connect(hotcache.clear_all, sender=endpoint, weak=False)
        post_delete.connect(hotcache.clear_all, sender=endpoint, weak=False)
