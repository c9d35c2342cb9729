"""The ops fixtures: ``project`` (a throw-away root)."""

from tests.support.monitoring_project import project

__all__ = ["project"]
