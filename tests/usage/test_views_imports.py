"""Import pages: upload, the queued task, htmx progress polling, the error report download, access."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from projects.models import ImportJob, ImportStatus
from tests import factories
from tests.conftest import Tenancy, client_for
from usage.models import UsageRecord
from usage.tasks import run_import

CSV = (
    "request_id,occurred_at,model,cost,project\n"
    "r1,2026-10-15T10:00:00Z,gpt-4o,0.5,chat\n"
    "r2,2026-10-15T10:00:00Z,gpt-4o,=HYPERLINK(1),chat\n"
    "r3,2026-10-15T10:00:00Z,gpt-4o,0.25,chat\n"
)


@pytest.fixture(autouse=True)
def import_dir(settings: Any, tmp_path: Any) -> Any:
    settings.QB_IMPORT_DIR = tmp_path / "imports"
    return settings.QB_IMPORT_DIR


def upload_and_run(client: Any, t: Tenancy, capture: Any, content: str) -> ImportJob:
    """Upload, then run the queued task in-process (never through a broker in tests)."""
    with capture() as callbacks:
        upload(client, t, content)
    assert len(callbacks) == 1
    job = ImportJob.objects.get()
    run_import.apply(args=[job.pk])
    job.refresh_from_db()
    return job


def upload(client: Any, t: Tenancy, content: str = CSV, **extra: str) -> Any:
    url = reverse("import_create", kwargs={"org_slug": t.org.slug})
    return client.post(url, {"file": SimpleUploadedFile("usage.csv", content.encode()), **extra})


def detail_url(t: Tenancy, job: ImportJob) -> str:
    return reverse("import_detail", kwargs={"org_slug": t.org.slug, "import_id": job.public_id})


def test_an_upload_is_saved_queued_on_commit_and_imported_by_the_task(
    tenancy: Tenancy, django_capture_on_commit_callbacks: Any, import_dir: Any
) -> None:
    client = client_for(tenancy.finance)
    with django_capture_on_commit_callbacks() as callbacks:
        response = upload(client, tenancy)
    job = ImportJob.objects.get()
    assert response.status_code == 302 and response["Location"] == detail_url(tenancy, job)
    assert (job.status, job.format, job.bytes_total) == (ImportStatus.PENDING, "csv", len(CSV))
    assert (import_dir / job.stored_name).read_text() == CSV
    assert len(callbacks) == 1

    assert run_import.apply(args=[job.pk]).get() == ImportStatus.DONE
    assert run_import.apply(args=[job.pk]).get() == "skipped"

    job.refresh_from_db()
    assert (job.rows_processed, job.rows_good, job.rows_bad, job.rows_new) == (3, 2, 1, 2)
    assert job.bytes_processed == job.bytes_total and job.percent == 100
    assert UsageRecord.objects.count() == 2


def test_the_progress_partial_polls_while_running_and_stops_when_done(tenancy: Tenancy) -> None:
    client = client_for(tenancy.viewer)
    job = ImportJob.objects.create(
        organization=tenancy.org,
        format="csv",
        original_name="a.csv",
        stored_name="a",
        bytes_total=1000,
        bytes_processed=400,
        rows_processed=12,
        status=ImportStatus.RUNNING,
    )
    running = client.get(detail_url(tenancy, job), headers={"HX-Request": "true"}).content.decode()
    ImportJob.objects.filter(pk=job.pk).update(status=ImportStatus.DONE)
    done = client.get(detail_url(tenancy, job), headers={"HX-Request": "true"}).content.decode()

    assert running.lstrip().startswith('<section class="card" id="import-progress"')
    assert 'hx-trigger="every 1s"' in running and "40 %" in running
    assert "<html" not in running
    assert "hx-trigger" not in done and "100 %" in done


def test_the_detail_page_lists_the_first_errors_and_the_report_downloads_neutralised(
    tenancy: Tenancy, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(tenancy.admin)
    content = CSV.replace("=HYPERLINK(1)", "=1+2").replace("gpt-4o,0.25", "=cmd,x")
    job = upload_and_run(client, tenancy, django_capture_on_commit_callbacks, content)

    page = client.get(detail_url(tenancy, job)).content.decode()
    report = client.get(
        reverse("import_errors_csv", kwargs={"org_slug": tenancy.org.slug, "import_id": job.public_id})
    )

    assert "Download the error report" in page and '<td class="num">3</td>' in page
    rows = list(csv.reader(io.StringIO(b"".join(report.streaming_content).decode())))
    assert report["Content-Disposition"].startswith("attachment")
    assert [row[:2] for row in rows] == [["line", "column"], ["3", "cost"], ["4", "cost"]]
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)


def test_a_file_that_cannot_be_imported_fails_with_its_reason(
    tenancy: Tenancy, django_capture_on_commit_callbacks: Any
) -> None:
    client = client_for(tenancy.admin)
    job = upload_and_run(client, tenancy, django_capture_on_commit_callbacks, "model,cost\nm,1\n")
    assert job.status == ImportStatus.FAILED
    assert "missing column(s): request_id, occurred_at" in job.error
    assert "missing column(s)" in client.get(detail_url(tenancy, job)).content.decode()


@pytest.mark.parametrize("role", ["owner", "viewer"])
def test_owners_and_viewers_read_imports_but_cannot_upload(tenancy: Tenancy, role: str) -> None:
    client = client_for(getattr(tenancy, role))
    assert client.get(reverse("import_list", kwargs={"org_slug": tenancy.org.slug})).status_code == 200
    assert upload(client, tenancy).status_code == 403
    assert ImportJob.objects.count() == 0


def test_another_orgs_account_is_a_form_error(tenancy: Tenancy) -> None:
    factories.make_account(tenancy.other_org, slug="theirs")
    response = upload(client_for(tenancy.admin), tenancy, account="theirs")
    assert response.status_code == 400
    assert ImportJob.objects.count() == 0


def test_outsiders_get_404_on_every_import_page(tenancy: Tenancy) -> None:
    job = ImportJob.objects.create(
        organization=tenancy.org, format="csv", original_name="a.csv", stored_name="a"
    )
    client = client_for(tenancy.outsider)
    kwargs = {"org_slug": tenancy.org.slug, "import_id": job.public_id}
    swapped = {"org_slug": tenancy.other_org.slug, "import_id": job.public_id}
    assert client.get(reverse("import_list", kwargs={"org_slug": tenancy.org.slug})).status_code == 404
    assert upload(client, tenancy).status_code == 404
    assert client.get(reverse("import_detail", kwargs=kwargs)).status_code == 404
    assert (
        client.get(reverse("import_detail", kwargs=kwargs), headers={"HX-Request": "true"}).status_code == 404
    )
    assert client.get(reverse("import_errors_csv", kwargs=kwargs)).status_code == 404
    assert client.get(reverse("import_detail", kwargs=swapped)).status_code == 404


def test_the_empty_list_explains_what_can_be_imported(tenancy: Tenancy) -> None:
    html = (
        client_for(tenancy.viewer).get(reverse("import_list", kwargs={"org_slug": tenancy.org.slug})).content
    )
    assert b"No imports yet." in html
    assert b"Upload a file" not in html


def test_import_pages_run_a_fixed_number_of_queries(
    tenancy: Tenancy, django_assert_max_num_queries: Any
) -> None:
    for n in range(5):
        job = ImportJob.objects.create(
            organization=tenancy.org,
            format="csv",
            original_name=f"{n}.csv",
            stored_name="a",
            created_by=tenancy.admin,
        )
    client = client_for(tenancy.admin)
    with django_assert_max_num_queries(8):
        assert client.get(reverse("import_list", kwargs={"org_slug": tenancy.org.slug})).status_code == 200
    with django_assert_max_num_queries(6):
        assert client.get(detail_url(tenancy, job)).status_code == 200
