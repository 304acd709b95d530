from django.apps import AppConfig


class SendsConfig(AppConfig):
    name = "sends"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_save

        from accounts.models import Organization
        from sends.models import Policy

        def create_default_policies(sender, instance, created, **kwargs):
            if created:
                Policy.objects.ensure_defaults(instance)

        post_save.connect(create_default_policies, sender=Organization, weak=False)
