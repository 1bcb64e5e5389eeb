"""workshops' migrations 0001-0008 in one: the models as they are now, created at once.

A new database takes this path (Django rendered every model again for each of the
old migrations' field changes: most of a fresh `migrate`'s time); a database that
applied the old ones keeps them (``replaces``).

0004 and 0005 (recipes and environment values for rows already there) are left
out: a new database has no rows; load_catalog seeds them as they are now.
"""

import aladdin.workloads.models
import django.core.validators
import django.db.models.deletion
import re
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ('workshops', '0001_initial'),
        ('workshops', '0002_ssh_keys'),
        ('workshops', '0003_image_recipes'),
        ('workshops', '0004_seed_image_recipes'),
        ('workshops', '0005_manual_platform_env'),
        ('workshops', '0006_backoffice_labels'),
        ('workshops', '0007_reason_message'),
        ('workshops', '0008_idle'),
    ]

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='PlatformEnvVar',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=128, unique=True, validators=[django.core.validators.RegexValidator('^[A-Za-z_][A-Za-z0-9_]*$', "A variable name is letters, digits and '_', not starting with a digit.")], verbose_name='key')),
                ('value', models.TextField(blank=True, verbose_name='value')),
                ('description', models.CharField(blank=True, max_length=200, verbose_name='description')),
                ('is_active', models.BooleanField(default=True, verbose_name='active')),
                ('sort', models.PositiveIntegerField(default=0, verbose_name='sort')),
            ],
            options={
                'verbose_name': 'platform environment variable',
                'verbose_name_plural': 'platform environment variables',
                'ordering': ['sort', 'key'],
            },
        ),
        migrations.CreateModel(
            name='ResourcePreset',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=40, unique=True, verbose_name='name')),
                ('cpu_millicores', models.PositiveIntegerField(verbose_name='CPU (millicores)')),
                ('memory_mib', models.PositiveIntegerField(verbose_name='memory (MiB)')),
                ('recommended', models.BooleanField(default=False, verbose_name='recommended')),
                ('is_active', models.BooleanField(default=True, verbose_name='active')),
                ('sort', models.PositiveIntegerField(default=0, verbose_name='sort')),
            ],
            options={
                'verbose_name': 'resource preset',
                'verbose_name_plural': 'resource presets',
                'ordering': ['sort', 'pk'],
            },
        ),
        migrations.CreateModel(
            name='IdlePolicy',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('warn_minutes', models.PositiveIntegerField(blank=True, null=True, verbose_name='jobs: warn after (minutes idle)')),
                ('stop_minutes', models.PositiveIntegerField(blank=True, null=True, verbose_name='jobs: stop after (minutes idle)')),
                ('threshold_percent', models.PositiveSmallIntegerField(default=5, verbose_name='jobs: idle below (GPU utilisation, %)')),
                ('workshop_warn_minutes', models.PositiveIntegerField(blank=True, null=True, verbose_name='workshops: warn after (minutes idle)')),
                ('workshop_stop_minutes', models.PositiveIntegerField(blank=True, null=True, verbose_name='workshops: stop after (minutes idle)')),
                ('workshop_cpu_percent', models.PositiveSmallIntegerField(default=5, verbose_name='workshops: idle below (CPU, percent of one core)')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated at')),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='idle_policy', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'idle policy',
                'verbose_name_plural': 'idle policies',
            },
        ),
        migrations.CreateModel(
            name='Image',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=80, verbose_name='name')),
                ('tag', models.CharField(max_length=80, verbose_name='tag')),
                ('description', models.TextField(blank=True, verbose_name='contents')),
                ('is_active', models.BooleanField(default=True, verbose_name='active')),
                ('sort', models.PositiveIntegerField(default=0, verbose_name='sort')),
                ('python_version', models.CharField(blank=True, help_text='Major.minor, e.g. 3.11; empty for an image without Python.', max_length=8, validators=[django.core.validators.RegexValidator(re.compile('^3\\.[0-9]{1,2}$'), 'Major.minor, e.g. 3.11.')], verbose_name='Python version')),
                ('packages', models.JSONField(blank=True, default=list, help_text='Pinned: ["torch==2.6.0", "torchvision==0.21.0"].', validators=[aladdin.workloads.models.ListValidator('^[A-Za-z0-9][A-Za-z0-9._-]*(\\[[A-Za-z0-9._,-]+\\])?==[A-Za-z0-9.+!_-]+$', 'Pin every package to one version (name==version): %(values)s')], verbose_name='Python packages')),
                ('apt_packages', models.JSONField(blank=True, default=list, validators=[aladdin.workloads.models.ListValidator('^[a-z0-9][a-z0-9.+-]+$', 'Not Debian package names: %(values)s')], verbose_name='Debian packages')),
                ('conda', models.BooleanField(default=False, verbose_name='conda')),
                ('cuda', models.CharField(blank=True, help_text='The CUDA its torch is built for, e.g. 12.4; empty for none.', max_length=8, validators=[django.core.validators.RegexValidator(re.compile('^[0-9]{2}\\.[0-9]$'), 'e.g. 12.4')], verbose_name='CUDA')),
                ('base_os', models.CharField(default='debian-12', max_length=32, verbose_name='userland')),
                ('container_image', models.CharField(blank=True, help_text='What the Kubernetes backend runs, built from this recipe (manage.py image_dockerfile).', max_length=255, verbose_name='container image')),
                ('build_state', models.CharField(choices=[('missing', 'not built yet'), ('building', 'building'), ('ready', 'ready'), ('unavailable', 'unavailable'), ('failed', 'build failed')], default='missing', max_length=16, verbose_name='build state')),
                ('build_progress', models.PositiveSmallIntegerField(default=0, verbose_name='build progress')),
                ('build_step', models.CharField(blank=True, max_length=200, verbose_name='build step')),
                ('build_reason', models.TextField(blank=True, verbose_name='why unavailable')),
                ('cpu_only', models.BooleanField(default=False, verbose_name='CPU only on this host')),
                ('build_facts', models.JSONField(blank=True, default=dict, verbose_name='measured in the image')),
                ('build_key', models.CharField(blank=True, max_length=80, verbose_name='build key')),
                ('build_checked_at', models.DateTimeField(blank=True, null=True, verbose_name='build checked at')),
            ],
            options={
                'verbose_name': 'image',
                'verbose_name_plural': 'images',
                'ordering': ['sort', 'pk'],
                'constraints': [models.UniqueConstraint(fields=('name', 'tag'), name='image_name_tag')],
            },
        ),
        migrations.CreateModel(
            name='Workshop',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason_id', models.CharField(blank=True, default='', max_length=64, verbose_name='reason message')),
                ('reason_params', models.JSONField(blank=True, default=dict, verbose_name='reason parameters')),
                ('name', models.CharField(max_length=40, validators=[django.core.validators.RegexValidator('^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$', "Use 1 to 40 lowercase letters, digits or '-', starting and ending with a letter or digit.")], verbose_name='name')),
                ('cpu_millicores', models.PositiveIntegerField(verbose_name='CPU (millicores)')),
                ('memory_mib', models.PositiveIntegerField(verbose_name='memory (MiB)')),
                ('applied_cpu_millicores', models.PositiveIntegerField(default=0, verbose_name='applied CPU (millicores)')),
                ('applied_memory_mib', models.PositiveIntegerField(default=0, verbose_name='applied memory (MiB)')),
                ('state', models.CharField(choices=[('creating', 'Workshop is waiting for creating.'), ('running', 'Workshop is created.'), ('stopping', 'Stopping'), ('stopped', 'Stopped'), ('failed', 'Failed'), ('deleting', 'Deleting')], default='creating', max_length=16, verbose_name='state')),
                ('reason', models.TextField(blank=True, verbose_name='reason')),
                ('waiting_for_image', models.BooleanField(default=False, verbose_name='waiting for image')),
                ('runtime_facts', models.JSONField(blank=True, default=dict, verbose_name='what runs')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated at')),
                ('started_at', models.DateTimeField(blank=True, null=True, verbose_name='started at')),
                ('stopped_at', models.DateTimeField(blank=True, null=True, verbose_name='stopped at')),
                ('idle_warned_at', models.DateTimeField(blank=True, help_text='Its user was warned that it sits idle (cleared when it works again).', null=True, verbose_name='idle warning sent at')),
                ('image', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, to='workshops.image', verbose_name='image')),
                ('preset', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, to='workshops.resourcepreset', verbose_name='resources')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='workshops', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'workshop',
                'verbose_name_plural': 'workshops',
                'ordering': ['-created_at', '-pk'],
            },
        ),
        migrations.CreateModel(
            name='WorkshopEnvVar',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=128, validators=[django.core.validators.RegexValidator('^[A-Za-z_][A-Za-z0-9_]*$', "A variable name is letters, digits and '_', not starting with a digit.")], verbose_name='key')),
                ('value_encrypted', models.TextField(verbose_name='value (encrypted)')),
                ('workshop', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='env_vars', to='workshops.workshop', verbose_name='workshop')),
            ],
            options={
                'verbose_name': 'workshop environment variable',
                'verbose_name_plural': 'workshop environment variables',
                'ordering': ['key'],
            },
        ),
        migrations.CreateModel(
            name='WorkshopEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=80, verbose_name='workload')),
                ('kind', models.CharField(max_length=40, verbose_name='kind')),
                ('message', models.TextField(blank=True, verbose_name='message')),
                ('created_at', models.DateTimeField(auto_now_add=True, db_index=True, verbose_name='created at')),
                ('workshop', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='events', to='workshops.workshop', verbose_name='workshop')),
            ],
            options={
                'verbose_name': 'workshop event',
                'verbose_name_plural': 'workshop events',
                'ordering': ['-created_at', '-pk'],
            },
        ),
        migrations.CreateModel(
            name='SSHKey',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(blank=True, max_length=100, verbose_name='name')),
                ('algorithm', models.CharField(max_length=40, verbose_name='type')),
                ('bits', models.PositiveIntegerField(verbose_name='bits')),
                ('public_key', models.TextField(verbose_name='public key')),
                ('fingerprint', models.CharField(db_index=True, max_length=80, verbose_name='fingerprint')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('last_used_at', models.DateTimeField(blank=True, null=True, verbose_name='last used')),
                ('revoked_at', models.DateTimeField(blank=True, null=True, verbose_name='revoked')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='ssh_keys', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'SSH key',
                'verbose_name_plural': 'SSH keys',
                'ordering': ['-created_at', '-pk'],
                'constraints': [models.UniqueConstraint(condition=models.Q(('revoked_at__isnull', True)), fields=('fingerprint',), name='sshkey_active_fingerprint')],
            },
        ),
        migrations.AddConstraint(
            model_name='workshop',
            constraint=models.UniqueConstraint(fields=('user', 'name'), name='workshop_user_name'),
        ),
        migrations.AddConstraint(
            model_name='workshopenvvar',
            constraint=models.UniqueConstraint(fields=('workshop', 'key'), name='workshop_env_key'),
        ),
    ]
