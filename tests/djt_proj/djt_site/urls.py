from django.urls import path
from shop import views

urlpatterns = [
    path("order", views.create_order),
    path("record-async", views.record_async),
]
