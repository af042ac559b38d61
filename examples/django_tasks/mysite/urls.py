from django.urls import path

from newsletter import views

urlpatterns = [path("subscribe", views.subscribe), path("stats", views.stats), path("result/<str:rid>", views.result)]
