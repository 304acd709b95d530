from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from fluxomail import hotcache

        # A change saved in this process is seen by its next request at once (others: within
        # HOT_CACHE_SECONDS).
        for model in ("ApiKey", "Organization"):
            sender = self.get_model(model)
            post_save.connect(hotcache.clear_all, sender=sender, weak=False)
            post_delete.connect(hotcache.clear_all, sender=sender, weak=False)
