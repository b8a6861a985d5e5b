"""auth_failures: failed logins per client address, shared by every process

Revision ID: 0002_auth_failures
Revises: 0001
Create Date: 2026-12-03 13:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002_auth_failures'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('auth_failures',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('client', sa.String(length=64), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_auth_failures'))
    )
    op.create_index('ix_auth_failures_client_at', 'auth_failures', ['client', 'at'])
    op.create_index('ix_auth_failures_at', 'auth_failures', ['at'])


def downgrade() -> None:
    op.drop_index('ix_auth_failures_at', table_name='auth_failures')
    op.drop_index('ix_auth_failures_client_at', table_name='auth_failures')
    op.drop_table('auth_failures')
