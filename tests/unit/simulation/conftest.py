"""The monitoring fixtures the simulation tests share: ``project`` and ``fake_evidently``."""

from tests.support.monitoring_project import fake_evidently, project

__all__ = ["fake_evidently", "project"]
