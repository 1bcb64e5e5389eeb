"""Create the "support" group and set its permissions to the role's table."""

from django.core.management.base import BaseCommand

from aladdin.backoffice.roles import SUPPORT_GROUP, sync_support_group


class Command(BaseCommand):
    help = (
        'Create the "support" staff group and give it exactly the permissions of '
        "aladdin/backoffice/roles.py (also done after every migrate). Add a support "
        "agent with: manage.py backoffice_roles --add PHONE_OR_USERNAME"
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--add",
            metavar="PHONE_OR_USERNAME",
            help="also make this user staff and a member of the support group",
        )

    def handle(self, *args, add=None, **options):
        count, missing = sync_support_group()
        self.stdout.write(f'Group "{SUPPORT_GROUP}": {count} permissions.')
        for name in missing:
            self.stderr.write(f"missing permission (run migrate first): {name}")
        if add:
            from aladdin.backoffice.forms import find_staff_login

            user = find_staff_login(add)
            if user is None:
                self.stderr.write(f"no user with the phone number or username {add!r}")
                raise SystemExit(1)
            from django.contrib.auth.models import Group

            user.is_staff = True
            user.save(update_fields=["is_staff"])
            user.groups.add(Group.objects.get(name=SUPPORT_GROUP))
            self.stdout.write(f"{user.username or user.pk} is now support staff.")
