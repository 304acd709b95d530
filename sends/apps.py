from django.apps import AppConfig


class SendsConfig(AppConfig):
    name = "sends"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from anymail.signals import tracking
        from django.db.models.signals import post_delete, post_save

        from accounts.models import Organization
        from fluxomail import hotcache
        from sends import provider_events
        from sends.models import Policy

        # The ESPs' delivery outcomes (sends/provider_webhooks.py) into the event log.
        tracking.connect(provider_events.receive, dispatch_uid="fluxomail.provider_events")

        def create_default_policies(sender, instance, created, **kwargs):
            if created:
                Policy.objects.ensure_defaults(instance)

        post_save.connect(create_default_policies, sender=Organization, weak=False)
        post_save.connect(hotcache.clear_all, sender=Policy, weak=False)
        post_delete.connect(hotcache.clear_all, sender=Policy, weak=False)
