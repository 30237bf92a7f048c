from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("jobs", "0004_tokenname")]

    operations = [migrations.RemoveIndex(model_name="job", name="job_owner_name_run")]
