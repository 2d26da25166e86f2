from __future__ import annotations

from django.urls import path, register_converter

from . import views, views_alerts, views_budgets, views_ledger, views_review


class MonthConverter:
    """``YYYY-MM`` in URLs, kept as text; the view validates the month (13 -> 404)."""

    regex = r"[0-9]{4}-[0-9]{2}"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(MonthConverter, "yyyymm")

urlpatterns = [
    path("", views.overview, name="overview"),
    # Budgets, alerts, balances and the top-up ledger (billing engineer).
    path("budgets/", views_budgets.budget_list, name="budget_list"),
    path("budgets/new/", views_budgets.budget_create, name="budget_create"),
    path("budgets/<uuid:budget_id>/", views_budgets.budget_edit, name="budget_edit"),
    path("budgets/<uuid:budget_id>/delete/", views_budgets.budget_delete, name="budget_delete"),
    path(
        "budgets/<uuid:budget_id>/webhook-secret/",
        views_budgets.budget_webhook_rotate,
        name="budget_webhook_rotate",
    ),
    path("alerts/", views_alerts.alert_list, name="alert_list"),
    path("alerts/webhook-secret/", views_alerts.alert_webhook_rotate, name="alert_webhook_rotate"),
    path("alerts/<uuid:alert_id>/ack/", views_alerts.alert_ack, name="alert_ack"),
    path("balances/", views_ledger.balance_list, name="balance_list"),
    path("balances/<slug:account_slug>/", views_ledger.balance_detail, name="balance_detail"),
    path(
        "balances/<slug:account_slug>/low-balance/",
        views_ledger.account_low_balance_edit,
        name="account_low_balance_edit",
    ),
    path("topups/", views_ledger.topup_list, name="topup_list"),
    path("topups/new/", views_ledger.topup_create, name="topup_create"),
    path("topups/import/", views_ledger.topup_import, name="topup_import"),
    # Month review, close and exports (finance engineer); <month> is YYYY-MM in the org's zone.
    path("review/", views_review.month_review, name="month_review"),
    path("review/<yyyymm:month>/", views_review.month_review_month, name="month_review_month"),
    path("review/<yyyymm:month>/close/", views_review.month_close, name="month_close"),
    path("review/<yyyymm:month>/reopen/", views_review.month_reopen, name="month_reopen"),
    path("review/<yyyymm:month>/usage.csv", views_review.month_export_csv, name="month_export_csv"),
    path("review/<yyyymm:month>/focus.csv", views_review.month_export_focus, name="month_export_focus"),
]
