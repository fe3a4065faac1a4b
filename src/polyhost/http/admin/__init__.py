"""The admin listener: Prometheus /metrics, the dashboard's JSON API, its bearer token and login,
and the /ui page."""
