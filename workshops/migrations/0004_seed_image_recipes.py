"""Give the seeded catalog images their recipes (issue 14).

Rows staff created or already gave a recipe are left alone: only an image of
the seed (same name and tag) whose recipe is still empty is filled in.
"""

from django.db import migrations


def fill(apps, schema_editor):
    from workshops.catalog import IMAGES, recipe_fields

    Image = apps.get_model("workshops", "Image")
    for name, tag, _contents, recipe in IMAGES:
        fields = recipe_fields(name, tag, recipe)
        Image.objects.filter(
            name=name, tag=tag, python_version="", packages=[], base_os="debian-12"
        ).exclude(container_image__gt="").update(**fields)


class Migration(migrations.Migration):
    dependencies = [("workshops", "0003_image_recipes")]
    operations = [migrations.RunPython(fill, migrations.RunPython.noop)]
