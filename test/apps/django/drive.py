#!/usr/bin/env python3
"""
Drives the music app's ORM from the command line, so a test in another
language writes the database exactly as the Django app would.

    TIDEWIRE_DJANGO_DB=/path/to.db python3 drive.py '[{"op": "create", ...}, ...]'

Each operation is one JSON object; the list runs in one transaction
(transaction.atomic), and the script prints one JSON document: {"ok": true,
"results": [...]} with, per operation, the key of the row it touched (a UUID
as the 32 hex digits Django stores in SQLite). On an error it prints {"ok":
false, "error": "..."}, exits 1 and nothing of the list is kept.

The models are those of the migrations applied to that database (Django's
historical models, as a data migration sees them), not music/models.py: the
tests write replicas that are at different migrations while they migrate one
by one, and each must be written as the app at its own migration writes it.

Operations (model names as in music/models.py; foreign keys as "<field>_id"):
    {"op": "create", "model": "Artist", "fields": {"name": "A", ...}}
    {"op": "update", "model": "Artist", "pk": "...", "fields": {...}}  QuerySet.update: only those columns
    {"op": "save",   "model": "Artist", "pk": "...", "fields": {...}}  Model.save(): every column
    {"op": "delete", "model": "Artist", "pk": "..."}                    Django's on_delete runs (CASCADE, SET_NULL)
    {"op": "m2m_add" | "m2m_remove", "model": "Album", "pk": "...", "field": "tags", "pks": ["..."]}

A string "$N" anywhere in an operation stands for the key operation N of the
same list returned, so one call can create rows that refer to each other.
"""

import json
import os
import sys
import uuid
from pathlib import Path


def key(value):
    return value.hex if isinstance(value, uuid.UUID) else value


def resolve(value, results):
    if isinstance(value, str) and value.startswith("$") and value[1:].isdigit():
        return results[int(value[1:])]
    if isinstance(value, list):
        return [resolve(v, results) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, results) for k, v in value.items()}
    return value


def run(op, apps):
    model = apps.get_model("music", op["model"])
    kind = op["op"]
    if kind == "create":
        return key(model.objects.create(**op.get("fields", {})).pk)
    if kind == "update":
        changed = model.objects.filter(pk=op["pk"]).update(**op["fields"])
        if changed != 1:
            raise LookupError(f"{op['model']} {op['pk']} not found")
        return op["pk"]
    obj = model.objects.get(pk=op["pk"])
    if kind == "save":
        for name, value in op["fields"].items():
            setattr(obj, name, value)
        obj.save()
        return key(obj.pk)
    if kind == "delete":
        obj.delete()
        return op["pk"]
    if kind in ("m2m_add", "m2m_remove"):
        manager = getattr(obj, op["field"])
        (manager.add if kind == "m2m_add" else manager.remove)(*op["pks"])
        return op["pk"]
    raise ValueError(f"unknown op {kind!r}")


def main():
    if len(sys.argv) != 2:
        print("usage: drive.py '<JSON list of operations>'", file=sys.stderr)
        return 2
    if not os.environ.get("TIDEWIRE_DJANGO_DB"):
        print("drive.py: set TIDEWIRE_DJANGO_DB to the database file", file=sys.stderr)
        return 2
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    import django
    from django.db import connection, transaction
    from django.db.migrations.executor import MigrationExecutor

    django.setup()
    applied = list(MigrationExecutor(connection).loader.applied_migrations)
    if not applied:
        print(json.dumps({"ok": False, "error": "no migration applied here: run manage.py migrate first"}))
        return 1
    apps = MigrationExecutor(connection).loader.project_state(applied).apps
    try:
        ops = json.loads(sys.argv[1])
        with transaction.atomic():
            results = []
            for op in ops:
                results.append(run(resolve(op, results), apps))
    except Exception as err:  # one JSON document whatever failed
        print(json.dumps({"ok": False, "error": f"{type(err).__name__}: {err}"}))
        return 1
    print(json.dumps({"ok": True, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
