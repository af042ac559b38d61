from django.urls import include, path
from newsletter import views

from asyncq.integrations.django_dashboard import dashboard_urls

urlpatterns = [
    path("subscribe", views.subscribe),
    path("stats", views.stats),
    path("result/<str:rid>", views.result),
    # the asyncq dashboard for the TASKS backend's Redis, behind Django's login (active staff users only)
    path("asyncq/", include(dashboard_urls())),
]
