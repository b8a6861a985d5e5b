"""Settings that load fine but leave the server unable to do its job, said at ``serve``
start-up (a warn line in the log) and by ``check-config`` (a line on stderr):

- ``authRequired`` is on for a listener, but no user exists: nobody can log in to send;
- the postmaster address is in a local domain but reaches no mailbox: bounces and mail
  to postmaster@ (which RFC 5321 section 4.5.1 requires to work) have nowhere to go.
"""

from __future__ import annotations


def configuration_warnings(config, directory, *, postmaster: bool = True) -> list[str]:
    """One line per problem; ``directory`` is a loaded :class:`~mailet_mta.directory.Directory`.

    ``postmaster=False`` leaves out the postmaster check: a running server's directory
    says that itself whenever it (re)loads."""
    where = config.path or "the embedded default configuration"
    warnings = []
    auth = [s.name for s in config.smtpservers if s.auth_required in ("true", "announce")]
    if auth and not directory.users:
        warnings.append(
            f"authRequired is set on the listener(s) {', '.join(auth)} in {where}, but no "
            f"user exists: nobody can log in to send mail; add one with 'mailet-mta users "
            f"add USER@DOMAIN --config {where}'")
    if postmaster:
        problem = directory.postmaster_problem()
        if problem:
            warnings.append(problem)
    return warnings


def directory_of(config, args):
    """The directory as stored (empty when there is no database yet), never creating one."""
    from ..directory import Directory, configured_mappings, load_tables
    from .common import CLIError, open_database

    directory = Directory(None, config.servernames, config.postmaster_address,
                          configured_mappings(config.spoolmanager))
    try:
        _config, db = open_database(_ReadOnly(args))
    except CLIError:
        return directory
    try:
        with db.engine.connect() as conn:
            directory.apply(load_tables(conn))
    finally:
        db.engine.dispose()
    return directory


class _ReadOnly:
    """``args`` as a read-only command sees them (the database is neither made nor upgraded)."""

    def __init__(self, args):
        self.config = getattr(args, "config", None) or getattr(args, "file", None)
        self.database = "read"
