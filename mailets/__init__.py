"""The standard matchers (:mod:`mailets.matchers`) and mailets (:mod:`mailets.mailets`).

They are written against :mod:`mailet_mta.api` and the standard library only, exactly
as a user's own matcher or mailet would be, so each is also a worked example. A short
name in a configuration (``match="RecipientIsLocal"``, ``class="ToProcessor"``) is the
name of a class in one of the modules of these two packages.
"""
