"""``ToRepository``: keep a copy of the mail in a named repository."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail

from ..awaiting import settled


def repository_name(path: str) -> str:
    """The repository name in a James-style path: ``file://var/mail/error/`` → ``error``.

    A plain name (``error``) is returned as is.
    """
    text = str(path).strip()
    if "://" in text:
        text = text.split("://", 1)[1]
    parts = [p for p in text.replace("\\", "/").split("/") if p]
    return parts[-1] if parts else ""


class ToRepository(GenericMailet):
    """Stores the mail in a repository (``context.store_in_repository``), where an
    operator can list, inspect and re-process it.

    Parameters:

    - ``repositoryPath`` (required): the repository's name, e.g. ``error``. James's
      ``file://var/mail/error/`` is accepted and means ``error`` (its last component).
    - ``passThrough`` (default false): true lets the mail continue in the processor;
      false ends it once it is stored.
    """

    info = "stores the mail in a repository"
    parameters = ("repositoryPath", "passThrough")

    def init_mailet(self) -> None:
        raw = self.get_required("repositoryPath")
        self.repository = repository_name(raw)
        if not self.repository:
            self.fail(f"repositoryPath {raw!r} names no repository; write e.g. error")
        self.pass_through = self.get_bool("passThrough", False)

    async def service(self, mail: Mail) -> None:
        await settled(self.context.store_in_repository(self.repository, mail))
        if not self.pass_through:
            mail.state = Mail.GHOST
