"""imap: modseqs (RFC 7162), tombstones of expunged messages, subscriptions, special use

Revision ID: 0003_imap
Revises: 0002_auth_failures
Create Date: 2026-12-03 16:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_imap'
down_revision = '0002_auth_failures'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('highest_modseq', sa.BigInteger(), nullable=False,
                                      server_default='1'))
        batch_op.add_column(sa.Column('special_use', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('message_count', sa.Integer(), nullable=False,
                                      server_default='0'))
        batch_op.add_column(sa.Column('vanished_horizon', sa.BigInteger(), nullable=False,
                                      server_default='0'))
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('modseq', sa.BigInteger(), nullable=False,
                                      server_default='1'))
        batch_op.create_index('ix_messages_mailbox_modseq', ['mailbox_id', 'modseq'],
                              unique=False)
    op.execute("UPDATE mailboxes SET message_count = (SELECT count(*) FROM messages "
               "WHERE messages.mailbox_id = mailboxes.id AND NOT messages.deleted)")
    op.create_table('expunged',
    sa.Column('mailbox_id', sa.Integer(), nullable=False),
    sa.Column('uid', sa.Integer(), nullable=False),
    sa.Column('modseq', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['mailbox_id'], ['mailboxes.id'],
                            name=op.f('fk_expunged_mailbox_id_mailboxes'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('mailbox_id', 'uid', name=op.f('pk_expunged'))
    )
    op.create_index('ix_expunged_mailbox_modseq', 'expunged', ['mailbox_id', 'modseq'])
    op.create_table('subscriptions',
    sa.Column('user', sa.String(length=320), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.PrimaryKeyConstraint('user', 'name', name=op.f('pk_subscriptions'))
    )


def downgrade() -> None:
    op.drop_table('subscriptions')
    op.drop_index('ix_expunged_mailbox_modseq', table_name='expunged')
    op.drop_table('expunged')
    with op.batch_alter_table('messages', schema=None) as batch_op:
        batch_op.drop_index('ix_messages_mailbox_modseq')
        batch_op.drop_column('modseq')
    with op.batch_alter_table('mailboxes', schema=None) as batch_op:
        batch_op.drop_column('vanished_horizon')
        batch_op.drop_column('message_count')
        batch_op.drop_column('special_use')
        batch_op.drop_column('highest_modseq')
