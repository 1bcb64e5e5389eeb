"""Creates the public OAuth client used by the VSCode / Cursor extension."""

from django.db import migrations

CLIENT_ID = "aladdin-ide-plugin"
REDIRECT_URIS = " ".join(
    [
        "vscode://AlayaNeW.aladdin/auth-callback",
        "cursor://AlayaNeW.aladdin/auth-callback",
        # RFC 8252 §7.3: the port of a loopback redirect may vary per login.
        "http://127.0.0.1/callback",
    ]
)


def create_client(apps, schema_editor):
    Application = apps.get_model("oauth2_provider", "Application")
    Application.objects.update_or_create(
        client_id=CLIENT_ID,
        defaults={
            "name": "Aladdin IDE plugin",
            "client_type": "public",
            "authorization_grant_type": "authorization-code",
            "redirect_uris": REDIRECT_URIS,
            "client_secret": "",
            # First-party client: the user is not asked to approve it again.
            "skip_authorization": True,
            "algorithm": "",
        },
    )


def delete_client(apps, schema_editor):
    apps.get_model("oauth2_provider", "Application").objects.filter(client_id=CLIENT_ID).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("oauth2_provider", "0022_refreshtoken_token_family_index"),
    ]

    operations = [migrations.RunPython(create_client, delete_client)]
