# The final state of a finished job, archived from Redis (jobs/archive.py). Nullable columns:
# adding them rewrites no existing row.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_job_submitted_index")]

    operations = [
        migrations.AddField(
            model_name="job", name="outcome", field=models.JSONField(blank=True, editable=False, null=True)
        ),
        migrations.AddField(
            model_name="job",
            name="finished_at",
            field=models.DateTimeField(blank=True, editable=False, null=True),
        ),
        migrations.AddIndex(
            model_name="job",
            index=models.Index(
                condition=models.Q(("cancelled_at__isnull", True), ("finished_at__isnull", True)),
                fields=["submitted_at"],
                name="job_unfinished",
            ),
        ),
    ]
