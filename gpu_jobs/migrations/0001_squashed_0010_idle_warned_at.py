"""gpu_jobs' migrations 0001-0010 in one: the models as they are now, created at once.

A new database takes this path (Django rendered every model again for each of the
old migrations' field changes: most of a fresh `migrate`'s time); a database that
applied the old ones keeps them (``replaces``). The data they seed comes from the
old modules, so the two paths seed the same rows.

0004's one worker per existing job is left out: a new database has no jobs.
"""

from importlib import import_module

import django.db.models.deletion
import gpu_jobs.models
from django.conf import settings
from django.db import migrations, models


_cards = import_module("gpu_jobs.migrations.0002_seed_gpu_types")


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ('gpu_jobs', '0001_initial'),
        ('gpu_jobs', '0002_seed_gpu_types'),
        ('gpu_jobs', '0003_job_runtime_fields'),
        ('gpu_jobs', '0004_job_workers'),
        ('gpu_jobs', '0005_job_logs_expired_at'),
        ('gpu_jobs', '0006_job_image_wait_and_facts'),
        ('gpu_jobs', '0007_job_ports'),
        ('gpu_jobs', '0008_backoffice_labels'),
        ('gpu_jobs', '0009_reason_message'),
        ('gpu_jobs', '0010_idle_warned_at'),
    ]

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='GpuType',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.SlugField(help_text='"40g" or "80g".', max_length=16, unique=True, verbose_name='code')),
                ('name', models.CharField(max_length=64, verbose_name='name')),
                ('memory_gb', models.PositiveIntegerField(help_text='Card memory, in GB.', verbose_name='card memory (GB)')),
                ('price_micro_per_hour', models.BigIntegerField(help_text='Price of one card, in µDCU per hour (1 DCU = 1,000,000 µDCU).', verbose_name='price (µDCU per hour)')),
                ('parallelism_weight', models.PositiveSmallIntegerField(help_text='Parallelism units one card uses.', verbose_name='parallelism weight')),
                ('cpu_millicores', models.PositiveIntegerField(help_text='CPU per card, in millicores.', verbose_name='CPU per card (millicores)')),
                ('memory_mib', models.PositiveIntegerField(help_text='Memory per card, in MiB.', verbose_name='memory per card (MiB)')),
                ('multi_card_allowed', models.BooleanField(default=True, help_text='Whether a worker may have more than one card of this type.', verbose_name='multi-card jobs allowed')),
            ],
            options={
                'verbose_name': 'GPU type',
                'verbose_name_plural': 'GPU types',
                'ordering': ['price_micro_per_hour', 'code'],
            },
        ),
        migrations.CreateModel(
            name='Job',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason_id', models.CharField(blank=True, default='', max_length=64, verbose_name='reason message')),
                ('reason_params', models.JSONField(blank=True, default=dict, verbose_name='reason parameters')),
                ('env_encrypted', models.TextField(blank=True, help_text='Encrypted JSON object of ENV.', verbose_name='ENV (encrypted)')),
                ('env_keys', models.JSONField(blank=True, default=list, help_text='ENV names (not values).', verbose_name='ENV names')),
                ('kind', models.CharField(choices=[('run', 'GPU Run'), ('debug', 'GPU Debug'), ('shell', 'Run Shell'), ('task', 'Run Task')], default='run', max_length=8, verbose_name='kind')),
                ('entry', models.CharField(help_text='A Python file, a shell script, or a module (with -m).', max_length=1024, verbose_name='entry')),
                ('python_module', models.BooleanField(default=False, help_text='Run the entry as python -m.', verbose_name='Python module')),
                ('args', models.JSONField(blank=True, default=list, help_text='Arguments, a list of strings.', verbose_name='arguments')),
                ('workdir', models.CharField(blank=True, max_length=1024, verbose_name='work dir')),
                ('image', models.CharField(blank=True, help_text='Image reference.', max_length=255, verbose_name='image')),
                ('interpreter', models.CharField(blank=True, help_text='A conda python under /root; wins over the image.', max_length=1024, verbose_name='interpreter')),
                ('cards_per_worker', models.PositiveSmallIntegerField(default=1, verbose_name='cards per worker')),
                ('workers', models.PositiveSmallIntegerField(default=1, verbose_name='workers')),
                ('state', models.CharField(choices=[('queued', 'Queued'), ('starting', 'Starting'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('stopped', 'Stopped')], db_index=True, default='queued', max_length=12, verbose_name='state')),
                ('exit_code', models.IntegerField(blank=True, null=True, verbose_name='exit code')),
                ('reason', models.TextField(blank=True, verbose_name='reason')),
                ('waiting_for_image', models.BooleanField(default=False, verbose_name='waiting for image')),
                ('runtime_facts', models.JSONField(blank=True, default=dict, verbose_name='what runs')),
                ('started_at', models.DateTimeField(blank=True, help_text='Resources allocated.', null=True, verbose_name='started at')),
                ('ended_at', models.DateTimeField(blank=True, help_text='Resources released.', null=True, verbose_name='ended at')),
                ('charged_micro', models.BigIntegerField(default=0, help_text='Total charged to the ledger so far (all workers), in µDCU.', verbose_name='charged (µDCU)')),
                ('metering_closed', models.BooleanField(default=False, help_text="Every worker's final charge is in the ledger.", verbose_name='metering closed')),
                ('gpu_devices', models.JSONField(blank=True, default=list, help_text='Cards the cluster assigned (CUDA_VISIBLE_DEVICES).', verbose_name='GPU devices')),
                ('ports', models.JSONField(blank=True, default=list, help_text='External HTTP ports.', verbose_name='ports')),
                ('idempotency_key', models.CharField(blank=True, max_length=64, verbose_name='idempotency key')),
                ('last_seen_at', models.DateTimeField(blank=True, help_text='Last time the reconciler saw the workload running.', null=True, verbose_name='last seen at')),
                ('stop_requested_at', models.DateTimeField(blank=True, help_text='A stop was asked for (by the user or for balance).', null=True, verbose_name='stop requested at')),
                ('deleted_at', models.DateTimeField(blank=True, help_text='Deleted by the user: hidden, logs gone, row kept.', null=True, verbose_name='deleted at')),
                ('logs_deleted', models.BooleanField(default=False, help_text='The kept output was removed from the cluster.', verbose_name='logs deleted')),
                ('logs_expired_at', models.DateTimeField(blank=True, help_text='When the kept output was removed for age (ALADDIN_JOB_LOG_RETENTION_DAYS after the end); the job page says so instead of showing an empty log.', null=True, verbose_name='logs expired at')),
                ('idle_warned_at', models.DateTimeField(blank=True, help_text='Its user was warned that its GPUs sit idle (cleared when they work again).', null=True, verbose_name='idle warning sent at')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated at')),
                ('gpu_type', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='jobs', to='gpu_jobs.gputype', verbose_name='GPU type')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='jobs', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'GPU job',
                'verbose_name_plural': 'GPU jobs',
                'ordering': ['-created_at', '-pk'],
            },
        ),
        migrations.CreateModel(
            name='JobConfiguration',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('env_encrypted', models.TextField(blank=True, help_text='Encrypted JSON object of ENV.', verbose_name='ENV (encrypted)')),
                ('env_keys', models.JSONField(blank=True, default=list, help_text='ENV names (not values).', verbose_name='ENV names')),
                ('name', models.CharField(max_length=100, verbose_name='name')),
                ('kind', models.CharField(choices=[('run', 'GPU Run'), ('debug', 'GPU Debug'), ('shell', 'Run Shell'), ('task', 'Run Task')], default='run', max_length=8, verbose_name='kind')),
                ('entry', models.CharField(blank=True, max_length=1024, verbose_name='entry')),
                ('python_module', models.BooleanField(default=False, verbose_name='Python module')),
                ('args', models.JSONField(blank=True, default=list, verbose_name='arguments')),
                ('workdir', models.CharField(blank=True, max_length=1024, verbose_name='work dir')),
                ('image', models.CharField(blank=True, max_length=255, verbose_name='image')),
                ('interpreter', models.CharField(blank=True, max_length=1024, verbose_name='interpreter')),
                ('cards_per_worker', models.PositiveSmallIntegerField(default=1, verbose_name='cards per worker')),
                ('workers', models.PositiveSmallIntegerField(default=1, verbose_name='workers')),
                ('ports', models.JSONField(blank=True, default=list, help_text='External HTTP ports.', verbose_name='ports')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated at')),
                ('gpu_type', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='gpu_jobs.gputype', verbose_name='GPU type')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='job_configurations', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'job configuration',
                'verbose_name_plural': 'job configurations',
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='JobPort',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('port', models.PositiveIntegerField(verbose_name='port')),
                ('token', models.CharField(default=gpu_jobs.models.new_port_token, editable=False, max_length=32, unique=True, verbose_name='token')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('removed_at', models.DateTimeField(blank=True, null=True, verbose_name='removed at')),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='exposed_ports', to='gpu_jobs.job', verbose_name='job')),
            ],
            options={
                'verbose_name': 'job port',
                'verbose_name_plural': 'job ports',
                'ordering': ['job', 'port'],
            },
        ),
        migrations.CreateModel(
            name='JobWorker',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('index', models.PositiveSmallIntegerField(default=0, verbose_name='index')),
                ('started_at', models.DateTimeField(blank=True, help_text='Cards allocated.', null=True, verbose_name='started at')),
                ('ended_at', models.DateTimeField(blank=True, help_text='Cards released.', null=True, verbose_name='ended at')),
                ('charged_micro', models.BigIntegerField(default=0, help_text='Charged to the ledger for this worker, in µDCU.', verbose_name='charged (µDCU)')),
                ('metering_closed', models.BooleanField(default=False, help_text='The final charge (to ended_at) is in the ledger.', verbose_name='metering closed')),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='worker_rows', to='gpu_jobs.job', verbose_name='job')),
            ],
            options={
                'verbose_name': 'job worker',
                'verbose_name_plural': 'job workers',
                'ordering': ['job', 'index'],
            },
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(fields=['user', 'state'], name='gpu_jobs_jo_user_id_bf91ca_idx'),
        ),
        migrations.AddConstraint(
            model_name='job',
            constraint=models.UniqueConstraint(condition=models.Q(('idempotency_key', ''), _negated=True), fields=('user', 'idempotency_key'), name='gpu_jobs_job_unique_idempotency_key'),
        ),
        migrations.AddConstraint(
            model_name='jobconfiguration',
            constraint=models.UniqueConstraint(fields=('user', 'name'), name='gpu_jobs_config_unique_name'),
        ),
        migrations.AddConstraint(
            model_name='jobport',
            constraint=models.UniqueConstraint(condition=models.Q(('removed_at__isnull', True)), fields=('job', 'port'), name='gpu_jobs_port_open_once'),
        ),
        migrations.AddIndex(
            model_name='jobworker',
            index=models.Index(fields=['metering_closed', 'started_at'], name='gpu_jobs_jo_meterin_d31341_idx'),
        ),
        migrations.AddConstraint(
            model_name='jobworker',
            constraint=models.UniqueConstraint(fields=('job', 'index'), name='gpu_jobs_worker_unique_index'),
        ),
        # The card presets of SPEC §4.1 (0002).
        migrations.RunPython(_cards.seed_gpu_types, migrations.RunPython.noop),
    ]
