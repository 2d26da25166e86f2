from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from .models import ApiKey, Membership, Organization, Project, ProviderAccount


class MembershipInline(admin.TabularInline):  # type: ignore[type-arg]
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "slug", "timezone", "currency", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "user__email", "organization__name"]
    autocomplete_fields = ["user", "organization"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "organization", "environment", "owner", "archived"]
    list_filter = ["environment", "archived", "organization"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


class ProviderAccountForm(forms.ModelForm):  # type: ignore[type-arg]
    """The credential is write-only: never rendered back; leave it blank to keep the stored one."""

    credential = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Access token or admin key. Write-only: leave blank to keep the current one.",
    )

    class Meta:
        model = ProviderAccount
        fields = [
            "organization",
            "kind",
            "name",
            "slug",
            "base_url",
            "newapi_user_id",
            "quota_per_unit",
            "currency",
            "status",
            "status_message",
            "balance_interval_minutes",
            "usage_interval_minutes",
            "low_balance_runway_days",
            "low_balance_amount",
        ]

    def save(self, commit: bool = True) -> ProviderAccount:
        account: ProviderAccount = super().save(commit=False)
        if self.cleaned_data.get("credential"):
            account.set_credential(self.cleaned_data["credential"])
        if commit:
            account.save()
        return account


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    form = ProviderAccountForm
    list_display = ["name", "organization", "kind", "base_url", "credential_display", "status"]
    list_filter = ["kind", "status", "organization"]
    search_fields = ["name", "slug", "base_url"]
    readonly_fields = ["credential_display"]
    prepopulated_fields = {"slug": ["name"]}

    @admin.display(description="Credential")
    def credential_display(self, obj: ProviderAccount) -> str:
        return f"set ({obj.credential_hint})" if obj.credential_encrypted else "not set"

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:  # type: ignore[override]
        return [
            *ProviderAccountForm.Meta.fields[:5],
            "credential",
            "credential_display",
            *ProviderAccountForm.Meta.fields[5:],
        ]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "name",
        "organization",
        "project",
        "provider_account",
        "redacted_hint",
        "status",
        "last_used_at",
    ]
    list_filter = ["status", "organization", "provider_account"]
    search_fields = ["name", "external_id", "redacted_hint"]
    list_select_related = ["organization", "project", "provider_account"]
