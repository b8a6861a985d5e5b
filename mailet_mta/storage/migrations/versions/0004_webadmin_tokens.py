"""webadmin_tokens: the bearer tokens of the admin HTTP API, stored hashed

Revision ID: 0004_webadmin_tokens
Revises: 0003_imap
Create Date: 2026-12-03 16:45:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004_webadmin_tokens'
down_revision = '0003_imap'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('webadmin_tokens',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_webadmin_tokens')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_webadmin_tokens_token_hash'))
    )


def downgrade() -> None:
    op.drop_table('webadmin_tokens')
