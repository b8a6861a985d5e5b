"""webmail_sessions: web mail login sessions in the database, so every worker process
and node serves every session

Revision ID: 0006_webmail_sessions
Revises: 0005_tls_reports
Create Date: 2026-12-04 17:15:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006_webmail_sessions'
down_revision = '0005_tls_reports'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webmail_sessions',
    sa.Column('id_hash', sa.String(length=64), nullable=False),
    sa.Column('user', sa.String(length=320), nullable=False),
    sa.Column('created', sa.Float(), nullable=False),
    sa.Column('last_seen', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id_hash', name=op.f('pk_webmail_sessions'))
    )
    op.create_index('ix_webmail_sessions_last_seen', 'webmail_sessions', ['last_seen'],
                    unique=False)


def downgrade() -> None:
    op.drop_index('ix_webmail_sessions_last_seen', table_name='webmail_sessions')
    op.drop_table('webmail_sessions')
