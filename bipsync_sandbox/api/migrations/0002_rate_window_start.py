from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("sandbox_api", "0001_initial"),
    ]

    operations = [
        # Rate-limit windows are scratch state: forget them rather than convert them.
        migrations.RunSQL("DELETE FROM sandbox_api_ratewindow", migrations.RunSQL.noop),
        migrations.RemoveField(model_name="ratewindow", name="window_index"),
        migrations.AddField(
            model_name="ratewindow",
            name="started_at",
            field=models.FloatField(default=0.0),
            preserve_default=False,
        ),
    ]
