"""Shared pytest settings."""
import os

from hypothesis import HealthCheck, settings

# Emulation and compilation times vary with machine load, so hypothesis deadlines would only add flakes.
# In CI the examples are derandomized: a red CI run is then reproducible on a developer's machine.
settings.register_profile("book", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("book"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "book")
