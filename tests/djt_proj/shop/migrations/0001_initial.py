from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(name="Order", fields=[
            ("id", models.AutoField(primary_key=True, serialize=False)),
            ("item", models.CharField(max_length=100)),
            ("processed", models.BooleanField(default=False)),
        ]),
        migrations.CreateModel(name="Event", fields=[
            ("id", models.AutoField(primary_key=True, serialize=False)),
            ("label", models.CharField(max_length=100)),
        ]),
    ]
