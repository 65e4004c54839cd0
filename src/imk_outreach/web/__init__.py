"""The web shell: public subscriber pages (``public``), built by :func:`imk_outreach.web.app.create_app`.

Imports only ``services`` and ``config`` (and the error leaves); maps core errors to HTTP status."""
