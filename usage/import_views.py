"""File import pages: upload, list, progress (polled by htmx) and the row-level error report.

Kept apart from ``usage/views.py`` (the analytics pages); the form lives here for the same reason.
"""

from __future__ import annotations

import csv
import uuid
from functools import partial
from itertools import islice
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.http import FileResponse, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from projects.http import AuthedRequest
from projects.models import ImportFormat, ImportJob, ProviderAccount
from projects.selectors import OrgAccess, get_import_for_user, get_org_for_user, refused_choices

from .imports import ERROR_HEADER, detect_format, import_dir, import_errors_path
from .tasks import run_import

LIST_TEMPLATE = "usage/imports.html"
DETAIL_TEMPLATE = "usage/import_detail.html"
ERRORS_SHOWN = 50


class ImportForm(forms.Form):
    file = forms.FileField(help_text="CSV or JSON Lines, up to the configured upload limit.")
    format = forms.ChoiceField(choices=[("", "Detect from the file"), *ImportFormat.choices], required=False)
    account = forms.ModelChoiceField(
        queryset=ProviderAccount.objects.none(),
        required=False,
        to_field_name="slug",
        empty_label="No provider account",
        help_text="Attribute the rows to an account (its keys, prices and quota scale).",
    )

    def __init__(self, access: OrgAccess, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Only this organization's accounts: another org's slug is a form error, never a lookup.
        self.fields["account"].queryset = ProviderAccount.objects.filter(  # type: ignore[attr-defined]
            organization=access.organization
        )

    def clean_file(self) -> UploadedFile[bytes]:
        upload: UploadedFile[bytes] = self.cleaned_data["file"]
        if upload.size and upload.size > settings.QB_IMPORT_MAX_UPLOAD_BYTES:
            raise forms.ValidationError(f"The file is over {settings.QB_IMPORT_MAX_UPLOAD_BYTES:,} bytes.")
        return upload


def _can_import(access: OrgAccess) -> bool:
    # Imports write the whole organization's usage: admins and finance only.
    return access.membership.sees_whole_organization


def _list_context(access: OrgAccess, form: ImportForm) -> dict[str, Any]:
    return {
        "access": access,
        "org": access.organization,
        "nav": "imports",
        "jobs": ImportJob.objects.filter(organization=access.organization).select_related(
            "provider_account", "created_by"
        )[:100],
        "form": form,
        "can_import": _can_import(access),
        "formats": ImportFormat.choices,
    }


@require_GET
@login_required
def import_list(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Recent imports with their counts, and the upload form for admins and finance."""
    access = get_org_for_user(request.user, org_slug)
    return render(request, LIST_TEMPLATE, _list_context(access, ImportForm(access)))


@login_required
def import_create(request: AuthedRequest, org_slug: str) -> HttpResponse:
    """Save the upload under VAR_DIR/imports/ (streamed in chunks) and queue its import."""
    access = get_org_for_user(request.user, org_slug)
    # POST only, checked after the org lookup so that outsiders get 404 whatever the method.
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    if not _can_import(access):
        raise PermissionDenied("Only admins and finance import usage files.")
    form = ImportForm(access, request.POST, request.FILES)
    if not form.is_valid():
        refused_choices(form, request.user, org_slug)
        return render(request, LIST_TEMPLATE, _list_context(access, form), status=400)
    upload: UploadedFile[bytes] = form.cleaned_data["file"]
    stored_name = f"{uuid.uuid4()}.upload"
    size = 0
    head = b""
    with (import_dir() / stored_name).open("wb") as out:
        for chunk in upload.chunks():
            if len(head) < 4096:
                head += chunk[: 4096 - len(head)]
            out.write(chunk)
            size += len(chunk)
    job = ImportJob.objects.create(
        organization=access.organization,
        provider_account=form.cleaned_data["account"],
        format=form.cleaned_data["format"] or detect_format(head, upload.name or ""),
        original_name=(upload.name or "upload")[:255],
        stored_name=stored_name,
        bytes_total=size,
        created_by=request.user,
    )
    transaction.on_commit(partial(run_import.delay, job.pk))
    return redirect("import_detail", org_slug=access.organization.slug, import_id=job.public_id)


def _first_errors(job: ImportJob) -> list[list[str]]:
    path = import_errors_path(job)
    if (not job.rows_bad and not job.error) or not path.exists():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(islice(csv.reader(handle), 1, ERRORS_SHOWN + 1))


@require_GET
@login_required
def import_detail(request: AuthedRequest, org_slug: str, import_id: str) -> HttpResponse:
    """One import's progress; htmx polls the ``progress`` partial every second until it is finished."""
    access, job = get_import_for_user(request.user, org_slug, import_id)
    context = {
        "access": access,
        "org": access.organization,
        "nav": "imports",
        "job": job,
        "errors": _first_errors(job) if job.is_finished else [],
        "errors_shown": ERRORS_SHOWN,
    }
    if request.htmx:
        return render(request, f"{DETAIL_TEMPLATE}#progress", context)
    return render(request, DETAIL_TEMPLATE, context)


@require_GET
@login_required
def import_errors_csv(request: AuthedRequest, org_slug: str, import_id: str) -> HttpResponseBase:
    """The row-level error report (line, column, reason) as CSV; formula cells are neutralised."""
    _access, job = get_import_for_user(request.user, org_slug, import_id)
    path = import_errors_path(job)
    filename = f"import-{job.public_id}-errors.csv"
    if not path.exists():
        response = HttpResponse(",".join(ERROR_HEADER) + "\r\n", content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response
    return FileResponse(path.open("rb"), as_attachment=True, filename=filename, content_type="text/csv")
