"""storage's migrations 0001-0002 in one: the models as they are now, created at once.

A new database takes this path (Django rendered every model again for each of the
old migrations' field changes: most of a fresh `migrate`'s time); a database that
applied the old ones keeps them (``replaces``).
"""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ('storage', '0001_initial'),
        ('storage', '0002_backoffice_labels'),
    ]

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Reclamation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('at', models.DateTimeField(verbose_name='reclaimed at')),
                ('bytes', models.BigIntegerField(help_text='Use when reclaimed, in bytes.', verbose_name='use (bytes)')),
                ('reason', models.CharField(choices=[('retention', 'No plan and no activity for 15 days'), ('staff', 'Reclaimed by staff')], max_length=16, verbose_name='reason')),
                ('basis_at', models.DateTimeField(blank=True, help_text='max(end of last plan or sign-up, last activity).', null=True, verbose_name='counted from')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='storage_reclamations', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'reclamation',
                'verbose_name_plural': 'reclamations',
                'ordering': ('-at',),
            },
        ),
        migrations.CreateModel(
            name='StorageAllowance',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('chosen_gib', models.PositiveIntegerField(default=0, help_text="Allowance the user expanded to, in GiB (0: the plan's free).", verbose_name='chosen allowance (GiB)')),
                ('staff_gib', models.PositiveIntegerField(blank=True, help_text="Allowance set by staff, in GiB; beyond the plan's max.", null=True, verbose_name='staff allowance (GiB)')),
                ('has_volume', models.BooleanField(default=True, verbose_name='has a volume')),
                ('last_bytes', models.BigIntegerField(default=0, help_text='Last sampled use, in bytes.', verbose_name='last sampled use (bytes)')),
                ('last_sampled_at', models.DateTimeField(blank=True, null=True, verbose_name='last sampled at')),
                ('hold', models.BooleanField(default=False, help_text='Staff hold: never reclaim.', verbose_name='hold')),
                ('hold_reason', models.TextField(blank=True, verbose_name='hold reason')),
                ('hold_at', models.DateTimeField(blank=True, null=True, verbose_name='held at')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
                ('hold_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='held by')),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='storage', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'storage allowance',
                'verbose_name_plural': 'storage allowances',
            },
        ),
        migrations.CreateModel(
            name='DailyPeak',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(help_text='Asia/Shanghai calendar day.', verbose_name='day')),
                ('peak_bytes', models.BigIntegerField(help_text='Largest sampled use that day, in bytes.', verbose_name='peak use (bytes)')),
                ('settled', models.BooleanField(default=False, verbose_name='settled')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='storage_peaks', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'daily peak',
                'verbose_name_plural': 'daily peaks',
                'ordering': ('-day',),
                'indexes': [models.Index(fields=['settled', 'day'], name='storage_peak_settled_day')],
                'constraints': [models.UniqueConstraint(fields=('user', 'day'), name='storage_peak_user_day')],
            },
        ),
        migrations.CreateModel(
            name='RetentionWarning',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('sent_at', models.DateTimeField(verbose_name='sent at')),
                ('reclaim_at', models.DateTimeField(verbose_name='reclaim at')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='storage_warnings', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'retention warning',
                'verbose_name_plural': 'retention warnings',
                'ordering': ('-sent_at',),
                'constraints': [models.UniqueConstraint(fields=('user', 'reclaim_at'), name='storage_warning_once')],
            },
        ),
        migrations.CreateModel(
            name='StorageCharge',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('day', models.DateField(help_text='Asia/Shanghai calendar day charged.', verbose_name='day')),
                ('peak_bytes', models.BigIntegerField(help_text='Peak use that day, in bytes.', verbose_name='peak use (bytes)')),
                ('charged_gib', models.PositiveIntegerField(help_text='Whole GiB over the free storage.', verbose_name='charged (GiB)')),
                ('free_gib', models.PositiveIntegerField(help_text='Free storage of the plan, in GiB.', verbose_name='free (GiB)')),
                ('amount_micro', models.BigIntegerField(help_text='Fee, in µDCU.', verbose_name='fee (µDCU)')),
                ('ledger_key', models.CharField(max_length=200, verbose_name='ledger key')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='storage_charges', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'storage charge',
                'verbose_name_plural': 'storage charges',
                'ordering': ('-day',),
                'constraints': [models.UniqueConstraint(fields=('user', 'day'), name='storage_charge_user_day')],
            },
        ),
    ]
