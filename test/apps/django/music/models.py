"""
The music app: a schema shaped like an ordinary Django app's, with every kind
of column and constraint the real-application tests of Tidewire exercise.

Keys: replicas insert artists, albums, tags and memberships at the same time,
so those use UUID keys (two replicas never pick the same one). Label keeps
Django's default AutoField on purpose: it is the table whose INTEGER keys two
replicas both allocate, which `tidewire init` must warn about and sync must
record as a conflict, never merge silently.
"""

import uuid

from django.db import models


class Label(models.Model):
    # AutoField (the project's DEFAULT_AUTO_FIELD): INTEGER PRIMARY KEY AUTOINCREMENT.
    name = models.CharField(max_length=100, unique=True)
    country = models.CharField(max_length=2)
    founded = models.DateField(null=True, blank=True)


class Artist(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100, unique=True)
    birth_date = models.DateField(null=True, blank=True)
    active = models.BooleanField(default=True)
    label = models.ForeignKey(Label, null=True, blank=True, on_delete=models.SET_NULL, related_name="artists")
    meta = models.JSONField(default=dict)
    created_at = models.DateTimeField()


class Tag(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.SlugField(max_length=40, unique=True)


class Album(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    artist = models.ForeignKey(Artist, on_delete=models.CASCADE, related_name="albums")
    title = models.CharField(max_length=200)
    released = models.DateField()
    price = models.DecimalField(max_digits=8, decimal_places=2)
    notes = models.TextField(null=True, blank=True)
    # The auto many-to-many table: Django gives it an INTEGER surrogate key and UNIQUE (album, tag).
    tags = models.ManyToManyField(Tag, blank=True, related_name="albums")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["artist", "title"], name="album_title_per_artist")]
        indexes = [models.Index(fields=["released"], name="album_released_idx")]


class Group(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(Artist, through="Membership", related_name="bands")


class Membership(models.Model):
    """The explicit `through` model of Group.members: one row per (band, artist) pair."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    band = models.ForeignKey(Group, on_delete=models.CASCADE)
    artist = models.ForeignKey(Artist, on_delete=models.CASCADE)
    role = models.CharField(max_length=40)
    joined = models.DateField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["band", "artist"], name="one_membership_per_pair")]
