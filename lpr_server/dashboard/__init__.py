"""The operators' dashboard: server-rendered pages over the domain apps, live over /ws/dashboard/ (docs/dashboard.md)."""
