from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from projects import views as project_views

urlpatterns = [
    path("", project_views.home, name="home"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Every organization page lives under /o/<org_slug>/ and resolves the org through get_org_for_user.
    path("o/<slug:org_slug>/", include("billing.urls")),
    path("o/<slug:org_slug>/", include("usage.urls")),
    path("admin/", admin.site.urls),
]
