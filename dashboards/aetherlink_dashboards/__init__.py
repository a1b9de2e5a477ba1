"""The AetherLink Grafana dashboards, one module per dashboard (UID, TITLE, build())."""

from . import billing, enhanced, health, sla

# In the order of the files the generator writes (by uid).
DASHBOARDS = sorted((enhanced, billing, health, sla), key=lambda module: module.UID)
