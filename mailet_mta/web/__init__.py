"""The web faces of the server: the admin HTTP API (``webadmin``)."""
