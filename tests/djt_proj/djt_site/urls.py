from django.contrib.auth.views import LoginView
from django.urls import include, path
from shop import views

from asyncq.integrations.django_dashboard import dashboard_urls

urlpatterns = [
    path("order", views.create_order),
    path("record-async", views.record_async),
    path("accounts/login/", LoginView.as_view()),
    path("asyncq/", include(dashboard_urls())),  # staff only: the TASKS backend's Redis
]
