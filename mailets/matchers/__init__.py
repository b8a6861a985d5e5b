"""Standard matchers: each module holds the matchers of one theme.

A matcher's class docstring gives its condition syntax (``match="Name=condition"``).
Matchers that need a condition refuse a missing or invalid one at start-up.
"""
