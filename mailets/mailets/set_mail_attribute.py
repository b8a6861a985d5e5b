"""``SetMailAttribute``: set mail attributes from the configuration."""

from __future__ import annotations

from mailet_mta.api import GenericMailet, Mail


class SetMailAttribute(GenericMailet):
    """Sets one mail attribute per parameter: each parameter's name is the attribute
    name and its value the attribute value, e.g. ``org.example.checked: "true"``.
    Values are set as configured (strings from XML, any scalar from YAML).
    """

    info = "sets mail attributes"

    def init_mailet(self) -> None:
        self.values = dict(self.config.parameters)
        if not self.values:
            self.fail("needs at least one parameter: attribute name = value")

    def service(self, mail: Mail) -> None:
        for name, value in self.values.items():
            mail.set_attribute(name, value)
