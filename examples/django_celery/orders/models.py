from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=100)
    status = models.CharField(max_length=20, default="new")
    attempts = models.IntegerField(default=0)
    failure_note = models.CharField(max_length=200, blank=True)


class Event(models.Model):
    """What the signal receivers saw (emails/receivers.py), in order."""

    label = models.CharField(max_length=200)
