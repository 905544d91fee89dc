"""The web dashboard: server-rendered pages (Jinja2) and a little JavaScript, every asset
in this package (no CDN, works offline). See :mod:`nosgrid.coordinator.dashboard.pages`."""
