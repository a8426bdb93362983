"""Dashboard routes, included at the site root: `/` is the overview, the other pages live under /dashboard/."""

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview_page, name="overview"),
    path("accounts/login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="dashboard:login"), name="logout"),
    path("dashboard/devices/", views.devices_page, name="devices"),
    path("dashboard/devices/<str:device_id>/", views.device_page, name="device"),
    path("dashboard/devices/<str:device_id>/commands/", views.send_command, name="send-command"),
    path("dashboard/detections/", views.detections_page, name="detections"),
    path("dashboard/detections/export.csv", views.detections_csv, name="detections-csv"),
    path("dashboard/alerts/", views.alerts_page, name="alerts"),
    path("dashboard/alerts/<int:alert_id>/ack/", views.acknowledge_alert, name="alert-ack"),
    path("dashboard/analytics/", views.analytics_page, name="analytics"),
]
