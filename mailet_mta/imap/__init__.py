"""The IMAP4rev1 server (RFC 3501 and the extensions modern clients rely on).

It talks to the users' mailboxes only through :class:`mailet_mta.mailstore.IMailStore`,
as the POP3 server does.
"""
