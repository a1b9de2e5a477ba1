"""The AetherLink Grafana dashboards as code.

aetherlink_dashboards/ builds them (grafana-foundation-sdk), generate.py
writes the JSON that the grafana role provisions, queries.py reads the
queries back for the live tests. Regenerate: `.venv/bin/python -m dashboards`
from the repository root (README.md).
"""
