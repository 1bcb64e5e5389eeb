"""The platform's environment defaults become the manual's values (issue 15).

Only rows still holding the earlier seed are changed: a value staff edited stays.
"""

from django.db import migrations


def to_manual(apps, schema_editor):
    from workshops.catalog import OLD_PLATFORM_ENV, PLATFORM_ENV

    PlatformEnvVar = apps.get_model("workshops", "PlatformEnvVar")
    values = {key: value for key, value, _description in PLATFORM_ENV}
    for key, old in OLD_PLATFORM_ENV.items():
        PlatformEnvVar.objects.filter(key=key, value=old).update(value=values[key])


class Migration(migrations.Migration):
    dependencies = [("workshops", "0004_seed_image_recipes")]
    operations = [migrations.RunPython(to_manual, migrations.RunPython.noop)]
