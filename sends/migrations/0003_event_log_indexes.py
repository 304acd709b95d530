# The event log's constraints and indexes, after 0002 filled the new columns: a migration of
# its own, because PostgreSQL refuses to alter a table whose rows this transaction updated
# while their deferred foreign-key checks are still pending.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sends", "0002_event_log"),
    ]

    operations = [
        migrations.AlterField(
            model_name="event",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="accounts.organization",
            ),
        ),
        migrations.AlterField(
            model_name="event",
            name="public_id",
            field=models.CharField(editable=False, max_length=40, unique=True),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(fields=["organization", "-public_id"], name="event_org_id"),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                fields=["organization", "type", "-public_id"], name="event_org_type"
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                fields=["organization", "recipient_domain", "-public_id"], name="event_org_domain"
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                condition=models.Q(("smtp_code__isnull", False)),
                fields=["organization", "smtp_code", "-public_id"],
                name="event_org_smtp_code",
            ),
        ),
        migrations.AddIndex(
            model_name="event",
            index=models.Index(
                condition=models.Q(("mta_host", ""), _negated=True),
                fields=["organization", "mta_host", "-public_id"],
                name="event_org_mta_host",
            ),
        ),
    ]
