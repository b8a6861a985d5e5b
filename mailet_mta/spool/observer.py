"""What the pipeline tells the world while mails run: per-mail trail, processor timing.

The pipeline is given one :class:`PipelineObserver`; the default reports to no one, so
the engine itself knows nothing of logging levels or metrics. The server adds a trail
observer (:class:`mailet_mta.logging_setup.TrailObserver`) and, when ``/metrics`` is
configured, a timing one (:class:`mailet_mta.metrics.MetricsObserver`). The flags are
read on the hot path before any work is done for an observer that does not want it.
"""

from __future__ import annotations

from ..mail import Mail


class PipelineObserver:
    """Receives the pipeline's events; this base ignores them all.

    ``trail``: True when the per-mail events (:meth:`entered`, :meth:`ghosted`,
    :meth:`mailet_changed`) are wanted. ``timed``: True when :meth:`processor_time`
    is wanted. Both may change while the server runs (a reloaded log level).
    """

    trail = False
    timed = False

    def entered(self, mail: Mail, processor: str) -> None:
        """``mail`` starts running through ``processor``."""

    def ghosted(self, mail: Mail, processor: str) -> None:
        """``mail`` finished in ``processor``."""

    def mailet_changed(self, label: str, mail: Mail) -> None:
        """The pair ``label`` changed ``mail``'s state, recipients or message."""

    def processor_time(self, processor: str, seconds: float) -> None:
        """One visit of a mail to ``processor`` took ``seconds``."""


class Observers(PipelineObserver):
    """Several observers as one."""

    def __init__(self, observers: list[PipelineObserver]):
        self.observers = list(observers)

    @property
    def trail(self) -> bool:
        return any(o.trail for o in self.observers)

    @property
    def timed(self) -> bool:
        return any(o.timed for o in self.observers)

    def entered(self, mail: Mail, processor: str) -> None:
        for o in self.observers:
            if o.trail:
                o.entered(mail, processor)

    def ghosted(self, mail: Mail, processor: str) -> None:
        for o in self.observers:
            if o.trail:
                o.ghosted(mail, processor)

    def mailet_changed(self, label: str, mail: Mail) -> None:
        for o in self.observers:
            if o.trail:
                o.mailet_changed(label, mail)

    def processor_time(self, processor: str, seconds: float) -> None:
        for o in self.observers:
            if o.timed:
                o.processor_time(processor, seconds)
