"""URLs mounted under /bench/ only when settings.BENCH_VIEWS is on (environment LPR_BENCH_VIEWS=1)."""

from django.urls import path

from . import views

urlpatterns = [path("bare/", views.bare, name="bench-bare")]
