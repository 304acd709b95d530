"""Drops the organization foreign keys' own indexes on the usage tables (issue 15): their
column leads usage_bucket, usage_org_hour, usage_rejection_bucket and usage_rej_org_hour, which
serve every query by organization (and the cascade of an organization's deletion)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_apikey_name_without_controls"),
        ("usage", "0002_usagecounter_suppressed"),
    ]

    operations = [
        migrations.AlterField(
            model_name="usagecounter",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="+",
                to="accounts.organization",
            ),
        ),
        migrations.AlterField(
            model_name="usagerejection",
            name="organization",
            field=models.ForeignKey(
                db_index=False,
                on_delete=models.deletion.CASCADE,
                related_name="+",
                to="accounts.organization",
            ),
        ),
    ]
