from django.urls import path

from notes.views import create_note

urlpatterns = [path("notes", create_note)]
