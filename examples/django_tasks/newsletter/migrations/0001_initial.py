from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies: list[tuple[str, str]] = []
    operations = [
        migrations.CreateModel(name="Subscriber", fields=[
            ("id", models.AutoField(primary_key=True, serialize=False)),
            ("email", models.EmailField(max_length=254, unique=True)),
            ("welcomed", models.BooleanField(default=False)),
        ]),
    ]
