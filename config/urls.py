from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from billing.api import router as billing_api
from projects import views as project_views
from projects.api import make_api
from usage.api import router as usage_api

# One JSON API under /api/v1/ (schema at openapi.json, docs at docs); routers live in their apps.
api = make_api()
api.add_router("", usage_api)
api.add_router("", billing_api)

urlpatterns = [
    path("", project_views.home, name="home"),
    path("login/", project_views.login_view, name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Every organization page lives under /o/<org_slug>/ and resolves the org through get_org_for_user.
    path("o/<slug:org_slug>/", include("billing.urls")),
    path("o/<slug:org_slug>/", include("usage.urls")),
    path("o/<slug:org_slug>/", include("projects.urls")),
    path("api/v1/", api.urls),
    path("admin/", admin.site.urls),
]
