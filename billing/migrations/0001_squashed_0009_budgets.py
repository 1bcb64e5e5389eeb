"""billing's migrations 0001-0009 in one: the models as they are now, created at once.

A new database takes this path (Django rendered every model again for each of the
old migrations' field changes: most of a fresh `migrate`'s time); a database that
applied the old ones keeps them (``replaces``). The data they seed comes from the
old modules, so the two paths seed the same rows.

0008's re-creation of the triggers after a table rebuild is not needed: they are made once, last.
"""

from importlib import import_module

import django.core.validators
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


_plans = import_module("billing.migrations.0002_seed_plans")
_triggers = import_module("billing.migrations.0004_ledger_append_only_triggers")


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ('billing', '0001_initial'),
        ('billing', '0002_seed_plans'),
        ('billing', '0003_account_next_event_arrears'),
        ('billing', '0004_ledger_append_only_triggers'),
        ('billing', '0005_orders_payments_refunds_invoices'),
        ('billing', '0006_refund_request_key'),
        ('billing', '0007_backoffice_labels'),
        ('billing', '0008_reason_message'),
        ('billing', '0009_budgets'),
    ]

    dependencies = [
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Budget',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('monthly_micro', models.BigIntegerField(validators=[django.core.validators.MinValueValidator(1)], verbose_name='monthly budget (µDCU)')),
                ('hard_stop', models.BooleanField(default=False, verbose_name='refuse new launches once it is spent')),
                ('updated_at', models.DateTimeField(auto_now=True, verbose_name='updated at')),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='budget', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'budget',
                'verbose_name_plural': 'budgets',
            },
        ),
        migrations.CreateModel(
            name='Grant',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('grant_class', models.CharField(choices=[('carry_over', 'Activated carry-over'), ('extension', 'Extension pack'), ('plan', 'Plan compute')], max_length=16, verbose_name='class')),
                ('tier', models.PositiveSmallIntegerField(blank=True, help_text='Plan tier of a plan grant; empty for other classes.', null=True, verbose_name='tier')),
                ('granted_micro', models.BigIntegerField(help_text='Compute granted, in µDCU (1 DCU = 1,000,000 µDCU).', verbose_name='granted (µDCU)')),
                ('remaining_micro', models.BigIntegerField(help_text='Compute left, in µDCU (1 DCU = 1,000,000 µDCU).', verbose_name='remaining (µDCU)')),
                ('state', models.CharField(choices=[('active', 'Active'), ('carried', 'Carried over (inactive)'), ('expired', 'Expired')], default='active', max_length=16, verbose_name='state')),
                ('active_until', models.DateTimeField(verbose_name='active until')),
                ('carry_until', models.DateTimeField(blank=True, null=True, verbose_name='carried until')),
                ('may_carry', models.BooleanField(default=True, verbose_name='may carry over')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('parent', models.ForeignKey(blank=True, help_text='The grant whose unused compute this carry-over holds.', null=True, on_delete=django.db.models.deletion.PROTECT, related_name='carried_into', to='billing.grant', verbose_name='carried from')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='grants', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'compute grant',
                'verbose_name_plural': 'compute grants',
                'ordering': ('active_until', 'pk'),
            },
        ),
        migrations.CreateModel(
            name='Order',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('price_fen', models.BigIntegerField(help_text='Amount to pay, in fen (0.01 yuan).', verbose_name='price (fen)')),
                ('education_price', models.BooleanField(default=False, help_text='The education price applied when the order was made.', verbose_name='education price')),
                ('out_trade_no', models.CharField(max_length=64, unique=True, verbose_name='order number')),
                ('channel', models.CharField(choices=[('page', 'Alipay page'), ('qr', 'Alipay QR code')], default='page', max_length=8, verbose_name='channel')),
                ('state', models.CharField(choices=[('pending', 'Awaiting payment'), ('paid', 'Paid'), ('closed', 'Closed (not paid)'), ('partly_refunded', 'Partly refunded'), ('refunded', 'Refunded')], default='pending', max_length=16, verbose_name='state')),
                ('trade_no', models.CharField(blank=True, help_text="Alipay's trade number.", max_length=64, verbose_name='Alipay trade number')),
                ('qr_code', models.TextField(blank=True, verbose_name='QR code')),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name='created at')),
                ('expires_at', models.DateTimeField(help_text='Unpaid orders are closed at this time.', verbose_name='expires at')),
                ('paid_at', models.DateTimeField(blank=True, null=True, verbose_name='paid at')),
                ('closed_at', models.DateTimeField(blank=True, null=True, verbose_name='closed at')),
                ('refunded_fen', models.BigIntegerField(default=0, help_text='Refunded so far, in fen.', verbose_name='refunded (fen)')),
                ('client_key', models.CharField(blank=True, help_text="The API client's Idempotency-Key; a retried POST returns the same order.", max_length=100, verbose_name='client key')),
                ('needs_support', models.BooleanField(default=False, help_text='Money arrived for a closed order: support must act.', verbose_name='needs support')),
                ('support_note', models.TextField(blank=True, verbose_name='support note')),
                ('grant', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='billing.grant', verbose_name='grant')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='orders', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'order',
                'verbose_name_plural': 'orders',
                'ordering': ('-created_at', '-pk'),
            },
        ),
        migrations.CreateModel(
            name='Invoice',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('title_type', models.CharField(choices=[('personal', 'Personal'), ('company', 'Company')], max_length=16, verbose_name='title type')),
                ('title', models.CharField(max_length=200, verbose_name='title')),
                ('tax_number', models.CharField(blank=True, max_length=30, verbose_name='tax number')),
                ('email', models.EmailField(max_length=254, verbose_name='e-mail')),
                ('item_name', models.CharField(default='技术服务费', max_length=50, verbose_name='item')),
                ('amount_fen', models.BigIntegerField(help_text='Invoiced amount, in fen.', verbose_name='amount (fen)')),
                ('state', models.CharField(choices=[('requested', 'Requested'), ('issued', 'Issued')], default='requested', max_length=16, verbose_name='state')),
                ('pdf', models.FileField(blank=True, upload_to='invoices/%Y/%m/', verbose_name='invoice PDF')),
                ('requested_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='requested at')),
                ('issued_at', models.DateTimeField(blank=True, null=True, verbose_name='issued at')),
                ('issued_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='issued by')),
                ('order', models.OneToOneField(on_delete=django.db.models.deletion.PROTECT, related_name='invoice', to='billing.order', verbose_name='order')),
            ],
            options={
                'verbose_name': 'invoice request',
                'verbose_name_plural': 'invoice requests',
                'ordering': ('-requested_at',),
            },
        ),
        migrations.CreateModel(
            name='PaymentNotification',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('out_trade_no', models.CharField(blank=True, db_index=True, max_length=64, verbose_name='order number')),
                ('trade_status', models.CharField(blank=True, max_length=32, verbose_name='trade status')),
                ('params', models.JSONField(default=dict, verbose_name='parameters')),
                ('source', models.CharField(default='notify', help_text='notify or query', max_length=16, verbose_name='source')),
                ('outcome', models.CharField(choices=[('fulfilled', 'Fulfilled the order'), ('duplicate', 'Already handled'), ('ignored', 'No action needed'), ('flagged', 'Flagged for support'), ('rejected', 'Rejected')], max_length=16, verbose_name='outcome')),
                ('detail', models.TextField(blank=True, verbose_name='detail')),
                ('received_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='received at')),
                ('order', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='notifications', to='billing.order', verbose_name='order')),
            ],
            options={
                'verbose_name': 'payment notification',
                'verbose_name_plural': 'payment notifications',
                'ordering': ('-received_at', '-pk'),
            },
        ),
        migrations.CreateModel(
            name='Plan',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.SlugField(unique=True, verbose_name='code')),
                ('name', models.CharField(max_length=100, verbose_name='name')),
                ('kind', models.CharField(choices=[('plan', 'Subscription plan'), ('extension', 'Extension pack')], default='plan', max_length=16, verbose_name='kind')),
                ('tier', models.PositiveSmallIntegerField(blank=True, help_text='0 free, 1 trial, 2 basic, 3 advanced; empty for extension packs.', null=True, verbose_name='tier')),
                ('dcu_micro', models.BigIntegerField(default=0, help_text='Compute granted per period, in µDCU (1 DCU = 1,000,000 µDCU).', verbose_name='compute per period (µDCU)')),
                ('gpu_parallelism', models.PositiveIntegerField(default=0, help_text='GPUs usable at once while this plan is the highest active.', verbose_name='GPU parallelism')),
                ('free_storage_gib', models.PositiveIntegerField(default=0, help_text='Storage included free of charge, in GiB.', verbose_name='free storage (GiB)')),
                ('max_storage_gib', models.PositiveIntegerField(default=0, help_text='Largest storage allowance the user may expand to, in GiB.', verbose_name='maximum storage (GiB)')),
                ('price_fen', models.BigIntegerField(default=0, help_text='Price in fen (0.01 yuan).', verbose_name='price (fen)')),
                ('education_price_fen', models.BigIntegerField(default=0, help_text='Price for verified education users, in fen (0.01 yuan).', verbose_name='education price (fen)')),
                ('period_days', models.PositiveSmallIntegerField(default=30, verbose_name='period (days)')),
                ('is_active', models.BooleanField(default=True, help_text='Offered for sale.', verbose_name='on sale')),
                ('sort_order', models.IntegerField(default=0, verbose_name='sort order')),
            ],
            options={
                'verbose_name': 'plan',
                'verbose_name_plural': 'plans',
                'ordering': ('sort_order', 'pk'),
                'constraints': [models.CheckConstraint(condition=models.Q(('dcu_micro__gte', 0)), name='plan_dcu_micro_gte_0'), models.CheckConstraint(condition=models.Q(('price_fen__gte', 0)), name='plan_price_fen_gte_0'), models.CheckConstraint(condition=models.Q(('education_price_fen__gte', 0)), name='plan_education_price_fen_gte_0')],
            },
        ),
        migrations.AddField(
            model_name='order',
            name='plan',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='orders', to='billing.plan', verbose_name='plan'),
        ),
        migrations.CreateModel(
            name='Subscription',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('starts_at', models.DateTimeField(verbose_name='starts at')),
                ('ends_at', models.DateTimeField(verbose_name='ends at')),
                ('state', models.CharField(choices=[('queued', 'Queued'), ('active', 'Active'), ('ended', 'Ended')], default='queued', max_length=16, verbose_name='state')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('source', models.CharField(blank=True, help_text='What created it, e.g. an order number.', max_length=200, verbose_name='source')),
                ('plan', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='subscriptions', to='billing.plan', verbose_name='plan')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='subscriptions', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'subscription',
                'verbose_name_plural': 'subscriptions',
                'ordering': ('starts_at', 'pk'),
            },
        ),
        migrations.AddField(
            model_name='order',
            name='subscription',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='billing.subscription', verbose_name='subscription'),
        ),
        migrations.AddField(
            model_name='grant',
            name='subscription',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='grants', to='billing.subscription', verbose_name='subscription'),
        ),
        migrations.CreateModel(
            name='Account',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('debt_micro', models.BigIntegerField(default=0, help_text='Arrears in µDCU (1 DCU = 1,000,000 µDCU); never negative.', verbose_name='arrears (µDCU)')),
                ('next_event_at', models.DateTimeField(blank=True, db_index=True, help_text='Earliest time a period starts or ends or a grant lapses; derived, kept so charges and the beat task skip period processing when nothing is due.', null=True, verbose_name='next event at')),
                ('user', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, related_name='billing_account', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'billing account',
                'verbose_name_plural': 'billing accounts',
                'constraints': [models.CheckConstraint(condition=models.Q(('debt_micro__gte', 0)), name='account_debt_micro_gte_0')],
            },
        ),
        migrations.CreateModel(
            name='ArrearsReview',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('opened_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='opened at')),
                ('debt_micro_at_open', models.BigIntegerField(help_text='Arrears when opened, in µDCU.', verbose_name='arrears when opened (µDCU)')),
                ('decision', models.CharField(choices=[('pending', 'Pending'), ('clean', 'Clean the data'), ('hold', 'Hold (keep the data)'), ('contact', 'Contact the user')], default='pending', max_length=16, verbose_name='decision')),
                ('decided_at', models.DateTimeField(blank=True, null=True, verbose_name='decided at')),
                ('note', models.TextField(blank=True, verbose_name='note')),
                ('decided_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='decided by')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='arrears_reviews', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'arrears review',
                'verbose_name_plural': 'arrears reviews',
                'ordering': ('-opened_at',),
                'constraints': [models.UniqueConstraint(condition=models.Q(('decision', 'pending')), fields=('user',), name='one_pending_arrears_review_per_user')],
            },
        ),
        migrations.CreateModel(
            name='BudgetAlert',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('month', models.DateField(help_text='Its first day.', verbose_name='month')),
                ('threshold', models.PositiveSmallIntegerField(verbose_name='threshold (%)')),
                ('spent_micro', models.BigIntegerField(verbose_name='spent (µDCU)')),
                ('budget_micro', models.BigIntegerField(verbose_name='budget (µDCU)')),
                ('created_at', models.DateTimeField(auto_now_add=True, verbose_name='created at')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='budget_alerts', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'budget alert',
                'verbose_name_plural': 'budget alerts',
                'constraints': [models.UniqueConstraint(fields=('user', 'month', 'threshold'), name='budget_alert_once')],
            },
        ),
        migrations.CreateModel(
            name='LedgerEntry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('reason_id', models.CharField(blank=True, default='', max_length=64, verbose_name='reason message')),
                ('reason_params', models.JSONField(blank=True, default=dict, verbose_name='reason parameters')),
                ('delta_micro', models.BigIntegerField(help_text='Signed change, in µDCU (1 DCU = 1,000,000 µDCU).', verbose_name='change (µDCU)')),
                ('kind', models.CharField(choices=[('grant', 'Grant'), ('charge', 'Charge'), ('expire', 'Expiry'), ('carry', 'Carry-over'), ('reactivate', 'Reactivation'), ('debt', 'Debt'), ('debt_settle', 'Debt settled'), ('voucher', 'Voucher'), ('refund', 'Refund'), ('forfeit', 'Forfeit')], max_length=16, verbose_name='kind')),
                ('reason', models.TextField(verbose_name='reason')),
                ('idempotency_key', models.CharField(max_length=200, unique=True, verbose_name='idempotency key')),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now, verbose_name='time')),
                ('grant', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='ledger_entries', to='billing.grant', verbose_name='grant')),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='ledger_entries', to=settings.AUTH_USER_MODEL, verbose_name='user')),
            ],
            options={
                'verbose_name': 'ledger entry',
                'verbose_name_plural': 'ledger entries',
                'ordering': ('created_at', 'pk'),
                'indexes': [models.Index(fields=['user', 'created_at'], name='billing_ledger_user_time')],
            },
        ),
        migrations.CreateModel(
            name='Refund',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('out_request_no', models.CharField(max_length=64, unique=True, verbose_name='refund number')),
                ('amount_fen', models.BigIntegerField(help_text='Refunded amount, in fen.', verbose_name='amount (fen)')),
                ('reason', models.TextField(verbose_name='reason')),
                ('state', models.CharField(choices=[('requested', 'Requested'), ('succeeded', 'Succeeded'), ('failed', 'Failed')], default='requested', max_length=16, verbose_name='state')),
                ('reversed_micro', models.BigIntegerField(default=0, help_text='Unspent compute taken back, in µDCU.', verbose_name='compute taken back (µDCU)')),
                ('error', models.TextField(blank=True, verbose_name='error')),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='created at')),
                ('completed_at', models.DateTimeField(blank=True, null=True, verbose_name='completed at')),
                ('request_key', models.CharField(blank=True, help_text="The requester's key (the back office's confirmation page): a request repeated with it refunds once.", max_length=100, verbose_name='request key')),
                ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='created by')),
                ('order', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='refunds', to='billing.order', verbose_name='order')),
            ],
            options={
                'verbose_name': 'refund',
                'verbose_name_plural': 'refunds',
                'ordering': ('-created_at',),
                'constraints': [models.CheckConstraint(condition=models.Q(('amount_fen__gt', 0)), name='refund_amount_positive'), models.UniqueConstraint(condition=models.Q(('request_key', ''), _negated=True), fields=('order', 'request_key'), name='refund_unique_request_key_per_order')],
            },
        ),
        migrations.AddIndex(
            model_name='subscription',
            index=models.Index(fields=['user', 'state'], name='billing_sub_user_state'),
        ),
        migrations.AddConstraint(
            model_name='subscription',
            constraint=models.CheckConstraint(condition=models.Q(('ends_at__gte', models.F('starts_at'))), name='subscription_ends_after_start'),
        ),
        migrations.AddConstraint(
            model_name='order',
            constraint=models.UniqueConstraint(condition=models.Q(('client_key', ''), _negated=True), fields=('user', 'client_key'), name='order_unique_client_key_per_user'),
        ),
        migrations.AddConstraint(
            model_name='order',
            constraint=models.CheckConstraint(condition=models.Q(('price_fen__gt', 0)), name='order_price_positive'),
        ),
        migrations.AddConstraint(
            model_name='order',
            constraint=models.CheckConstraint(condition=models.Q(('refunded_fen__gte', 0), ('refunded_fen__lte', models.F('price_fen'))), name='order_refund_within_price'),
        ),
        migrations.AddIndex(
            model_name='grant',
            index=models.Index(fields=['user', 'state'], name='billing_grant_user_state'),
        ),
        migrations.AddConstraint(
            model_name='grant',
            constraint=models.CheckConstraint(condition=models.Q(('remaining_micro__gte', 0), ('remaining_micro__lte', models.F('granted_micro'))), name='grant_remaining_between_0_and_granted'),
        ),
        # The plans of SPEC §3.1 (0002).
        migrations.RunPython(_plans.seed_plans, migrations.RunPython.noop),
        # The ledger's append-only triggers (0004), last: on SQLite an AddConstraint
        # above rebuilds its table, which would drop triggers made before it.
        migrations.RunPython(
            _triggers._run(_triggers.FORWARD), _triggers._run(_triggers.REVERSE), elidable=False
        ),
    ]
