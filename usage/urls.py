from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from . import import_views, source_views, views

urlpatterns: list[URLPattern | URLResolver] = [
    path("usage/", views.usage_explorer, name="usage_explorer"),
    path("projects/", views.project_list, name="project_list"),
    path("projects/<slug:project_slug>/", views.project_detail, name="project_detail"),
    path("keys/", views.key_list, name="key_list"),
    path("keys/<uuid:key_id>/", views.key_detail, name="key_detail"),
    path("imports/", import_views.import_list, name="import_list"),
    path("imports/new/", import_views.import_create, name="import_create"),
    path("imports/<uuid:import_id>/", import_views.import_detail, name="import_detail"),
    path("imports/<uuid:import_id>/errors.csv", import_views.import_errors_csv, name="import_errors_csv"),
    path("sources/", source_views.data_sources, name="data_sources"),
    path("sources/<slug:account_slug>/sync/", source_views.data_sources_sync, name="data_sources_sync"),
]
