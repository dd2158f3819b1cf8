"""
Settings of the demo app the real-application tests drive: one app (music),
one SQLite database whose file is named by TIDEWIRE_DJANGO_DB, so each test
replica is its own file migrated by `manage.py migrate`.
"""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

# A test fixture, never deployed: the key only has to exist.
SECRET_KEY = "tidewire-test-app-not-a-secret"
DEBUG = False
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = ["music"]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TIDEWIRE_DJANGO_DB", str(BASE_DIR / "db.sqlite3")),
        # Replicas are written by tidewire sync at the same time: wait for its locks.
        "OPTIONS": {"timeout": 20},
    }
}

TIME_ZONE = "UTC"
USE_TZ = True
USE_I18N = False
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
