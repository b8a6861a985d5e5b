"""tls_reports: outbound TLS policy state — the MTA-STS policy cache shared by every
process, and the TLS-RPT session counts per day, policy domain and result

Revision ID: 0005_tls_reports
Revises: 0004_webadmin_tokens
Create Date: 2026-12-03 17:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005_tls_reports'
down_revision = '0004_webadmin_tokens'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('mta_sts_policies',
    sa.Column('domain', sa.String(length=255), nullable=False),
    sa.Column('policy_id', sa.String(length=64), nullable=False),
    sa.Column('mode', sa.String(length=16), nullable=False),
    sa.Column('mx', sa.Text(), nullable=False),
    sa.Column('max_age', sa.Integer(), nullable=False),
    sa.Column('fetched_at', sa.Float(), nullable=False),
    sa.Column('expires_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('domain', name=op.f('pk_mta_sts_policies'))
    )
    op.create_table('tls_report_counts',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('policy_domain', sa.String(length=255), nullable=False),
    sa.Column('policy_type', sa.String(length=16), nullable=False),
    sa.Column('result_type', sa.String(length=64), nullable=False),
    sa.Column('mx_host', sa.String(length=255), nullable=False),
    sa.Column('count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tls_report_counts')),
    sa.UniqueConstraint('day', 'policy_domain', 'policy_type', 'result_type', 'mx_host',
                        name='uq_tls_report_counts_key')
    )


def downgrade() -> None:
    op.drop_table('tls_report_counts')
    op.drop_table('mta_sts_policies')
