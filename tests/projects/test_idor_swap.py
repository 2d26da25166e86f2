"""A5 idor_swap: Acme's admin sends Globex's ids in paths, query strings and form bodies.

Generated from the URLconf and the forms, so a new URL, URL kwarg, object-choosing form field or
raw request parameter cannot escape it:

- every URL kwarg needs an org-B builder in ``ORG_B_KWARGS``; every org URL with an object kwarg is
  requested by Acme's admin with Globex's value in the path (GET, htmx GET, POST);
- every ``ModelChoiceField`` of every form the views use needs a swap case in ``FORM_CASES``;
  every query parameter a ``GET`` form reads is swapped on every org page the admin can open;
- every parameter a view reads straight from ``request.GET`` / ``request.POST`` (and every key of an
  ``hx-vals`` attribute in the templates) must be declared in ``RAW_PARAMS``;
- each test checksums every Globex row (every model with a path to an organization, plus its
  members' user rows) before and after, and no response may show Globex's names or amounts;
- a path swap, and a form choice naming Globex's row, is logged on ``quotaboard.audit`` (WARNING) with
  who, the URL's org, what and which id; an id that exists nowhere is not.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from django import forms
from django.apps import apps
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from django.urls import reverse
from django.utils import timezone

from billing.models import AlertDelivery, AlertEvent, AlertPolicy, AutoRechargeRule, Budget, TopUp
from billing.services.ledger import balance_snapshot_record_manual, topup_record
from billing.services.statements import period_close
from projects.models import (
    ApiKey,
    IdempotencyRecord,
    ImportJob,
    IngestToken,
    Organization,
    Project,
    ProviderAccount,
    Role,
)
from projects.services import ingest_token_create
from tests import factories
from tests.billing.builders import spend
from tests.conftest import Tenancy, client_for
from tests.projects.test_url_access import ROLE_MATRIX, _kwarg_names, build_url, org_url_names
from usage.forms import UsageFilterForm
from usage.imports import import_errors_path
from usage.models import IngestRun, Stream, StreamState, UsageRecord

REPO = Path(__file__).resolve().parents[2]
OWN_APPS = ("projects", "usage", "billing")
# Globex's names all carry this marker; its amounts are odd enough not to occur in Acme's pages.
CANARY = f"gx{uuid.uuid4().hex[:10]}"
B_AMOUNTS = ("73519.28", "73,519.28", "48213.77", "48,213.77", "6151.0917", "6,151.09", "6151.09")
B_MONTH = "2026-09"  # Globex closed this month; Acme has nothing in it


@dataclass
class OrgB:
    org: Organization
    admin: User
    member: User
    project: Project
    account: ProviderAccount
    key: ApiKey
    token: IngestToken
    job: ImportJob
    budget: Budget
    alert: AlertEvent
    topup: TopUp
    model: str

    def canaries(self) -> list[str]:
        """What no Acme response may contain: Globex's names, slugs, ids and amounts."""
        return [
            CANARY,
            str(self.key.public_id),
            str(self.token.public_id),
            str(self.job.public_id),
            str(self.budget.public_id),
            str(self.alert.public_id),
            self.token.prefix,
            *B_AMOUNTS,
        ]


def build_org_b(t: Tenancy) -> OrgB:
    """Globex (the outsider's org) with one of every object type org URLs name, and their related rows."""
    org = t.other_org
    org.name = f"Globex {CANARY}"
    org.save()
    admin = t.outsider
    member = factories.make_member(org, Role.VIEWER, factories.make_user(f"{CANARY}-viewer")).user
    project = factories.make_project(org, f"Project {CANARY}", slug=f"{CANARY}-project", owner=admin)
    account = factories.make_account(org, "openai", name=f"Account {CANARY}", slug=f"{CANARY}-account")
    key = factories.make_key(org, project=project, account=account, name=f"key-{CANARY}")
    model = f"{CANARY}-model"
    today = timezone.now().astimezone(org.zoneinfo).date()
    for day, amount in ((today - timedelta(days=2), "6151.0917"), (date(2026, 9, 15), "6151.0917")):
        spend(org, day, amount, project=project, account=account, model=model, key=key.external_id)
    period_close(organization=org, month=date(2026, 9, 1), user=admin)
    token, _secret = ingest_token_create(
        organization=org, name=f"Token {CANARY}", created_by=admin, project=project
    )
    job = ImportJob.objects.create(
        organization=org,
        provider_account=account,
        format="csv",
        original_name=f"{CANARY}.csv",
        stored_name=f"{CANARY}.upload",
        created_by=admin,
    )
    budget = Budget.objects.create(
        organization=org,
        project=project,
        name=f"Budget {CANARY}",
        monthly_amount=Decimal("73519.28"),
        webhook_url=f"https://{CANARY}.globex.test/hook",
        recipients=f"{CANARY}@globex.test",
    )
    budget.notify_members.add(admin)
    alert = AlertEvent.objects.create(
        organization=org,
        kind="budget_threshold",
        budget=budget,
        period="2026-11",
        threshold=80,
        title=f"Alert {CANARY}",
        message=f"{CANARY} spent 48213.77",
    )
    AlertDelivery.objects.create(alert=alert, channel="email", target=f"{CANARY}@globex.test")
    AlertPolicy.objects.create(organization=org, webhook_url=f"https://{CANARY}.globex.test/org")
    now = timezone.now()
    topup = topup_record(
        account=account,
        amount=Decimal("73519.28"),
        created_at=now - timedelta(days=5),
        status="credited",
        order_ref=f"{CANARY}-order",
        note=f"Top-up {CANARY}",
    )
    balance_snapshot_record_manual(account=account, remaining=Decimal("48213.77"), taken_at=now)
    AutoRechargeRule.objects.create(provider_account=account, threshold=Decimal("5"), amount=Decimal("50"))
    StreamState.objects.create(provider_account=account, stream=Stream.USAGE, cursor_at=now)
    IngestRun.objects.create(
        provider_account=account, organization=org, stream=Stream.USAGE, error=f"{CANARY} failed"
    )
    IdempotencyRecord.objects.create(
        organization=org, key=f"{CANARY}-idem", body_sha256="0" * 64, claimed_at=now
    )
    return OrgB(org, admin, member, project, account, key, token, job, budget, alert, topup, model)


# --- URL kwargs: Globex's value, and a value that exists nowhere ------------------------------------
# Every URL kwarg but org_slug. "own" kwargs are not objects of an organization (a month is a month
# of whichever org is in the URL): Acme's admin gets Acme's page, which must show nothing of Globex.
ORG_B_KWARGS: dict[str, Callable[[OrgB], str]] = {
    "project_slug": lambda b: b.project.slug,
    "account_slug": lambda b: b.account.slug,
    "key_id": lambda b: str(b.key.public_id),
    "token_id": lambda b: str(b.token.public_id),
    "import_id": lambda b: str(b.job.public_id),
    "budget_id": lambda b: str(b.budget.public_id),
    "alert_id": lambda b: str(b.alert.public_id),
    "username": lambda b: b.member.username,
    "month": lambda b: B_MONTH,
}
MISSING_KWARGS: dict[str, str] = {
    "project_slug": "no-such-project",
    "account_slug": "no-such-account",
    "key_id": str(uuid.uuid4()),
    "token_id": str(uuid.uuid4()),
    "import_id": str(uuid.uuid4()),
    "budget_id": str(uuid.uuid4()),
    "alert_id": str(uuid.uuid4()),
    "username": "no-such-user",
}
NOT_OBJECTS = {"month"}
# What the scoping helper's log line calls each kwarg's object.
OBJECT_NAMES = {
    "project_slug": "project",
    "account_slug": "provider account",
    "key_id": "API key",
    "token_id": "ingest token",
    "import_id": "import",
    "budget_id": "budget",
    "alert_id": "alert",
    "username": "member",
}


def swap_url_names() -> list[str]:
    return [name for name in org_url_names() if _kwarg_names(name) - {"org_slug"}]


def swapped_url(name: str, b: OrgB, *, missing: bool = False) -> str:
    kwargs = {"org_slug": "acme"}
    for kwarg in _kwarg_names(name) - {"org_slug"}:
        if missing and kwarg in MISSING_KWARGS:
            kwargs[kwarg] = MISSING_KWARGS[kwarg]
        else:
            kwargs[kwarg] = ORG_B_KWARGS[kwarg](b)
    return reverse(name, kwargs=kwargs)


# --- Checksums of every Globex row ------------------------------------------------------------------
# Models of our apps with no path to an organization: shared by all, and no org URL writes them.
GLOBAL_MODELS = {"usage.modelprice"}


def _org_lookup(model: type[models.Model]) -> str | None:
    """The shortest lookup from ``model`` to its Organization through non-null foreign keys."""
    if model is Organization:
        return "pk"
    frontier: list[tuple[type[models.Model], str]] = [(model, "")]
    for _depth in range(3):
        following = []
        for current, prefix in frontier:
            fks = [
                f for f in current._meta.concrete_fields if isinstance(f, models.ForeignKey) and not f.null
            ]
            for f in fks:
                if f.related_model is Organization:
                    return f"{prefix}{f.name}"
            following += [(f.related_model, f"{prefix}{f.name}__") for f in fks]
        frontier = following
    return None


def org_tables() -> dict[str, tuple[type[models.Model], str]]:
    tables = {}
    for model in apps.get_models(include_auto_created=True):
        if model._meta.app_label not in OWN_APPS:
            continue
        lookup = _org_lookup(model)
        label = model._meta.label_lower
        if lookup is None:
            assert label in GLOBAL_MODELS, (
                f"{label} has no path to an organization: checksum it or declare it"
            )
            continue
        tables[label] = (model, lookup)
    return tables


def _plain(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value


def org_checksums(org: Organization) -> dict[str, tuple[int, str]]:
    """Row count and sha256 of every row of ``org`` per table (and its members' user rows)."""
    sums = {}
    querysets: dict[str, models.QuerySet[Any]] = {
        label: model._default_manager.filter(**{lookup: org.pk})
        for label, (model, lookup) in org_tables().items()
    }
    querysets["auth.user"] = User.objects.filter(memberships__organization=org)
    for label, qs in querysets.items():
        names = [f.attname for f in qs.model._meta.concrete_fields]
        rows = [tuple(_plain(v) for v in row) for row in qs.order_by("pk").values_list(*names)]
        sums[label] = (len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
    return sums


def body(response: Any) -> str:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content).decode(errors="replace")
    return str(response.content.decode(errors="replace"))


def assert_shows_nothing_of(b: OrgB, response: Any, what: str, *, echo: str = "") -> None:
    """No Globex name, id or amount in the body; ``echo`` is what the admin typed, which a
    validation message may repeat ("Select a valid choice. <echo> is not one of ...")."""
    text = body(response)
    if echo:
        text = text.replace(f"Select a valid choice. {echo} is not one of the available choices.", "")
    leaked = [c for c in b.canaries() if c in text]
    assert not leaked, f"{what}: response shows Globex's {leaked}"


@pytest.fixture
def org_b(tenancy: Tenancy) -> OrgB:
    return build_org_b(tenancy)


@pytest.fixture
def unchanged(org_b: OrgB) -> Iterator[OrgB]:
    """Globex's rows, checksummed before the test's requests and compared after them."""
    before = org_checksums(org_b.org)
    empty = sorted(label for label, (count, _sha) in before.items() if not count)
    assert not empty, f"build_org_b makes no Globex rows in {empty}: the checksum would prove nothing there"
    yield org_b
    after = org_checksums(org_b.org)
    changed = sorted(label for label in before if before[label] != after[label])
    assert not changed, f"Globex rows changed: {changed}"


# --- The guards: nothing new escapes ----------------------------------------------------------------


def test_every_url_kwarg_has_an_org_b_builder_and_a_missing_value() -> None:
    kwargs = set().union(*(_kwarg_names(name) for name in org_url_names())) - {"org_slug"}
    assert kwargs <= ORG_B_KWARGS.keys(), (
        f"add org-B builders to ORG_B_KWARGS: {sorted(kwargs - ORG_B_KWARGS.keys())}"
    )
    assert kwargs - NOT_OBJECTS <= MISSING_KWARGS.keys() & OBJECT_NAMES.keys()
    assert swap_url_names(), "the walk found no URL with an object kwarg"


def test_every_model_with_rows_of_an_organization_is_checksummed() -> None:
    tables = org_tables()
    # The ones the sweep relies on, reached through one or two foreign keys.
    assert tables["billing.topup"][1] == "provider_account__organization"
    assert tables["billing.alertdelivery"][1] == "alert__organization"
    assert tables["billing.statementline"][1] == "statement__organization"
    assert tables["billing.budget_notify_members"][1] == "budget__organization"


@pytest.mark.django_db
def test_the_checksum_names_the_tables_whose_globex_rows_changed(org_b: OrgB) -> None:
    before = org_checksums(org_b.org)
    TopUp.objects.filter(pk=org_b.topup.pk).update(note="edited")
    Budget.notify_members.through.objects.filter(budget=org_b.budget).delete()
    after = org_checksums(org_b.org)
    assert sorted(k for k in before if before[k] != after[k]) == [
        "billing.budget_notify_members",
        "billing.topup",
    ]


def _view_forms() -> list[type[forms.BaseForm]]:
    """Every form class of our apps that the views can use (importing the URLconf imports them)."""
    from django.urls import get_resolver

    get_resolver().url_patterns  # noqa: B018 - import every view module

    found: list[type[forms.BaseForm]] = []
    stack: list[type[Any]] = [forms.BaseForm]
    while stack:
        cls = stack.pop()
        for sub in cls.__subclasses__():
            stack.append(sub)
            # Admin forms serve /admin/ (Django staff only; A1 shows no org role reaches it).
            module = sub.__module__.split(".")
            if module[0] in OWN_APPS and module[-1] != "admin":
                found.append(sub)
    return found


def object_choice_fields() -> set[tuple[str, str]]:
    return {
        (form.__name__, name)
        for form in _view_forms()
        for name, field in getattr(form, "base_fields", {}).items()
        if isinstance(field, forms.ModelChoiceField)
    }


def test_every_object_choosing_form_field_has_a_swap_case() -> None:
    fields = object_choice_fields()
    assert ("TopUpForm", "account") in fields and ("UsageFilterForm", "key") in fields
    covered = set().union(*(case.covers for case in FORM_CASES.values())) | GET_FORM_FIELDS
    assert {field for _form, field in GET_FORM_FIELDS} <= QUERY_VALUES.keys()
    assert fields <= covered, f"add swap cases to FORM_CASES for {sorted(fields - covered)}"


# Parameters views read from request.GET / request.POST themselves, not through a form field.
# "object": names an object of the organization, swapped by a case; anything else says why not.
RAW_PARAMS = {
    "account": "object",  # data sources: the htmx card of one account (swapped below)
    "since": "a timestamp",
    "panel": "a panel name from an allowlist",
    "format": "csv or nothing",
    "currency": "a currency code in use by the URL's organization",
    "page": "a page number",
    "status": "success / error",
    "table": "a table name of the panel",
    "open": "1 or nothing",
    "month": "YYYY-MM of the URL's organization",
    "plan-days": "a number (TopUpPlannerForm)",
    "plan-factor": "a number (TopUpPlannerForm)",
    "action": "console / rule",
    "reason": "free text of the reopen",
    "username": "the login form (no organization)",
}
_RAW_READ = re.compile(
    r"request\.(?:GET|POST)(?:\.get\(|\[)\s*[\"']([\w-]+)[\"']|[\"']([\w-]+)[\"']\s+in\s+request\.(?:GET|POST)"
)


def raw_request_params() -> set[str]:
    names = set()
    for app in OWN_APPS:
        for path in (REPO / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            names |= {a or b for a, b in _RAW_READ.findall(path.read_text())}
    return names


def hx_vals_keys() -> set[str]:
    keys = set()
    for path in (REPO / "templates").rglob("*.html"):
        for attr in re.findall(r"hx-vals\s*=\s*(['\"])(.*?)\1", path.read_text(), flags=re.S):
            keys |= set(re.findall(r"[\"']?([\w-]+)[\"']?\s*:", attr[1]))
    return keys


def test_every_raw_request_parameter_and_hx_vals_key_is_declared() -> None:
    found = raw_request_params()
    assert {"account", "panel", "month"} <= found, found  # the scan works
    undeclared = (found | hx_vals_keys()) - RAW_PARAMS.keys()
    assert not undeclared, f"declare these request parameters in RAW_PARAMS: {sorted(undeclared)}"


# --- Path swaps ------------------------------------------------------------------------------------


def _audit_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "quotaboard.audit" and r.levelno == logging.WARNING
    ]


@pytest.mark.parametrize("name", swap_url_names())
def test_globex_ids_in_acme_paths_are_404_logged_and_change_nothing(
    name: str, tenancy: Tenancy, unchanged: OrgB, caplog: pytest.LogCaptureFixture
) -> None:
    b = unchanged
    client = client_for(tenancy.admin)
    url = swapped_url(name, b)
    kwargs = _kwarg_names(name) - {"org_slug"}
    objects = kwargs - NOT_OBJECTS
    admin_get, admin_post = ROLE_MATRIX[name]["admin"]
    if objects:
        # The declared answer for an object that is not in Acme: 404, or 405 where the page takes no POST.
        expected = (404, 404, 405 if admin_post == 405 else 404)
        missing = swapped_url(name, b, missing=True)
        with caplog.at_level(logging.INFO, logger="quotaboard.audit"):
            assert _statuses(client, missing) == expected, f"made-up id {missing}"
        assert _audit_lines(caplog) == [], "an id that exists nowhere is not a cross-tenant attempt"
    else:
        expected = (admin_get, admin_get, admin_post)
    with caplog.at_level(logging.INFO, logger="quotaboard.audit"):
        responses = [
            client.get(url),
            client.get(url, headers={"HX-Request": "true"}),
            client.post(url, headers={"HX-Request": "true"}),
            client.post(url),
        ]
    got = tuple(r.status_code for r in responses[:3])
    assert got == expected, f"{url}: GET / htmx GET / htmx POST gave {got}, declared {expected}"
    assert responses[3].status_code == expected[2]
    for response in responses:
        assert_shows_nothing_of(b, response, url)
    lines = _audit_lines(caplog)
    if objects:
        (kwarg,) = objects
        wanted = (
            f"cross-tenant access refused user=admin org=acme object={OBJECT_NAMES[kwarg]} "
            f"id={ORG_B_KWARGS[kwarg](b)!r} owner_org_id={b.org.pk}"
        )
        # One line per request that reached the view (a POST to a GET-only page is refused before it).
        assert lines == [wanted] * (2 if expected[2] == 405 else 4), lines
    else:
        assert lines == []


def _statuses(client: Any, url: str) -> tuple[int, int, int]:
    return (
        client.get(url).status_code,
        client.get(url, headers={"HX-Request": "true"}).status_code,
        client.post(url, headers={"HX-Request": "true"}).status_code,
    )


def test_an_outsider_opening_acme_is_logged_and_a_made_up_org_is_not(
    tenancy: Tenancy, caplog: pytest.LogCaptureFixture
) -> None:
    client = client_for(tenancy.outsider)
    with caplog.at_level(logging.INFO, logger="quotaboard.audit"):
        assert client.get(reverse("overview", args=["acme"])).status_code == 404
        assert client.get(reverse("overview", args=["no-such-org"])).status_code == 404
    assert _audit_lines(caplog) == [
        f"cross-tenant access refused user=outsider org=acme object=organization id='acme' "
        f"owner_org_id={tenancy.org.pk}"
    ]


@pytest.mark.parametrize("name", [n for n in swap_url_names() if ROLE_MATRIX[n]["admin"][0] == 200])
def test_globex_sees_its_own_objects_on_the_same_urls(
    name: str, tenancy: Tenancy, org_b: OrgB, settings: Any, tmp_path: Path
) -> None:
    """Positive control: the org-B values are real, and Globex's pages do show the canaries."""
    settings.QB_IMPORT_DIR = tmp_path
    import_errors_path(org_b.job).write_text(f"line,column,reason\n2,project,no project {CANARY}\n")
    ImportJob.objects.filter(pk=org_b.job.pk).update(rows_bad=1, status="done")
    url = swapped_url(name, org_b).replace("/o/acme/", f"/o/{org_b.org.slug}/", 1)
    response = client_for(org_b.admin).get(url)
    assert response.status_code == 200, url
    text = body(response)
    assert any(c in text for c in org_b.canaries()), f"{url} shows no canary even to Globex"


# --- Query strings: every GET form's object fields on every page the admin opens -------------------
# The filter bar's object fields (and its model choice, a name of Globex's usage) are sent with
# Globex's values to every org page that answers the admin's GET with 200, as a page, an htmx
# request, every panel and every panel's CSV where the page has panels.
GET_FORM_FIELDS = {("UsageFilterForm", "project"), ("UsageFilterForm", "account"), ("UsageFilterForm", "key")}


# Each query parameter, Globex's value for it, and what a refused value is logged as (None: not an
# object of an organization, e.g. a model name, so a refusal is a form error that is not logged).
QUERY_VALUES: dict[str, tuple[Callable[[OrgB], str], str | None]] = {
    "project": (lambda b: b.project.slug, "project"),
    "account": (lambda b: b.account.slug, "provider account"),
    "key": (lambda b: str(b.key.public_id), "api key"),
    "model": (lambda b: b.model, None),
}


def _query_values(b: OrgB) -> dict[str, str]:
    return {param: value(b) for param, (value, _what) in QUERY_VALUES.items()}


def get_page_names() -> list[str]:
    return [name for name in org_url_names() if ROLE_MATRIX[name]["admin"][0] == 200]


@pytest.mark.parametrize("name", get_page_names())
def test_globex_ids_in_query_strings_are_ignored_or_errors(
    name: str, tenancy: Tenancy, unchanged: OrgB, caplog: pytest.LogCaptureFixture
) -> None:
    b = unchanged
    client = client_for(tenancy.admin)
    base = build_url(name, tenancy)
    for param, value in _query_values(b).items():
        caplog.clear()
        url = f"{base}?{param}={value}"
        with caplog.at_level(logging.INFO, logger="quotaboard.audit"):
            responses = [client.get(url), client.get(url, headers={"HX-Request": "true"})]
            page = responses[0]
            context = page.context or {}
            for panel in context.get("panels", []):
                panel_url = f"{url}&panel={panel['name']}"
                responses += [
                    client.get(panel_url, headers={"HX-Request": "true"}),
                    client.get(f"{panel_url}&format=csv"),
                ]
        card_of_one_account = name == "data_sources" and param == "account"
        for response in responses:
            # The htmx card of one account: another org's account is a 404, as in a path.
            wanted = 404 if card_of_one_account and response is responses[1] else 200
            assert response.status_code == wanted, (url, response.status_code)
            assert_shows_nothing_of(b, response, url, echo=value)
        form = context.get("form")
        filtered = isinstance(form, UsageFilterForm) and param in form.fields
        if filtered:
            # The filter bar drops the value and says so.
            assert form is not None and form.errors.get(param), f"{url}: no error for {param}"
            assert context["query"].params.get(param, "") == "", url
        what = QUERY_VALUES[param][1]
        line = f"cross-tenant access refused user=admin org=acme object={what} id={value!r} owner_org_id={b.org.pk}"
        if card_of_one_account:
            assert _audit_lines(caplog) == [line]
        elif filtered and what:
            assert _audit_lines(caplog) == [line] * len(responses), url
        else:
            assert _audit_lines(caplog) == [], url


def test_globex_sees_its_own_data_through_the_same_query_strings(tenancy: Tenancy, org_b: OrgB) -> None:
    """Positive control: the swapped values filter Globex's own explorer to Globex's usage."""
    client = client_for(org_b.admin)
    base = reverse("usage_explorer", args=[org_b.org.slug])
    for param, value in _query_values(org_b).items():
        page = client.get(f"{base}?{param}={value}&panel=models", headers={"HX-Request": "true"})
        assert page.status_code == 200 and org_b.model in body(page), param


# --- Form bodies: every object-choosing form field, in a valid form, with Globex's value ------------
# Each case returns the audit lines it expects: a choice naming Globex's row is logged like a path
# swap; a name inside an uploaded file is a row error of the import (reported on its line, not logged).


@dataclass(frozen=True)
class FormCase:
    covers: frozenset[tuple[str, str]]
    run: Callable[[Tenancy, OrgB, Any], list[str]]


FORM_CASES: dict[str, FormCase] = {}


def form_case(*covers: tuple[str, str]) -> Callable[[Callable[[Tenancy, OrgB, Any], list[str]]], Any]:
    def register(fn: Callable[[Tenancy, OrgB, Any], list[str]]) -> Any:
        FORM_CASES[fn.__name__] = FormCase(frozenset(covers), fn)
        return fn

    return register


def refused_line(b: OrgB, what: str, value: object) -> str:
    return (
        f"cross-tenant access refused user=admin org=acme object={what} id={str(value)!r} "
        f"owner_org_id={b.org.pk}"
    )


def _budget_data(t: Tenancy, **override: Any) -> dict[str, Any]:
    data = {
        "budget-project": t.project.pk,
        "budget-name": "Acme budget",
        "budget-monthly_amount": "100",
        "budget-currency": "USD",
        "budget-thresholds": "50, 80, 100",
    }
    data.update({f"budget-{k}": v for k, v in override.items()})
    return data


def _posts(client: Any, url: str, data: dict[str, Any]) -> list[Any]:
    return [client.post(url, data), client.post(url, data, headers={"HX-Request": "true"})]


def _budget_swaps(t: Tenancy, b: OrgB, client: Any, url: str) -> list[str]:
    lines = []
    swaps = (("project", b.project.pk, "project"), ("notify_members", b.admin.pk, "user"))
    for field, value, what in swaps:
        for response in _posts(client, url, _budget_data(t, **{field: value})):
            assert response.status_code == 200
            assert "Select a valid choice" in body(response), field
            assert_shows_nothing_of(b, response, f"{url} {field}")
            lines.append(refused_line(b, what, value))
    # A valid Acme member next to Globex's: still refused, and only Globex's is named in the log.
    data = _budget_data(t)
    data["budget-notify_members"] = [t.admin.pk, b.admin.pk]
    assert "Select a valid choice" in body(client.post(url, data))
    return [*lines, refused_line(b, "user", f"{t.admin.pk},{b.admin.pk}")]


@form_case(("BudgetForm", "project"), ("BudgetForm", "notify_members"))
def budget_create_with_globex_project_or_member(t: Tenancy, b: OrgB, client: Any) -> list[str]:
    url = reverse("budget_create", args=["acme"])
    assert client.post(url, _budget_data(t)).status_code == 302  # the valid form saves: the control
    Budget.objects.filter(organization=t.org).delete()
    lines = _budget_swaps(t, b, client, url)
    assert not Budget.objects.filter(organization=t.org).exists()
    return lines


@form_case(("BudgetForm", "project"), ("BudgetForm", "notify_members"))
def budget_edit_with_globex_project_or_member(t: Tenancy, b: OrgB, client: Any) -> list[str]:
    budget = Budget.objects.create(organization=t.org, project=t.project, monthly_amount=Decimal("100"))
    lines = _budget_swaps(t, b, client, reverse("budget_edit", args=["acme", budget.public_id]))
    budget.refresh_from_db()
    assert budget.project_id == t.project.pk and not budget.notify_members.exists()
    return lines


@form_case(("TopUpForm", "account"))
def topup_create_on_a_globex_account(t: Tenancy, b: OrgB, client: Any) -> list[str]:
    factories.make_account(t.org, "openai", slug="acme-acct")
    data = {
        "topup-account": b.account.pk,
        "topup-amount": "10",
        "topup-status": "credited",
        "topup-kind": "paid",
        "topup-purchased_on": "2026-11-01",
    }
    for response in _posts(client, reverse("topup_create", args=["acme"]), data):
        assert response.status_code == 200
        assert "Select a valid choice" in body(response)
        assert_shows_nothing_of(b, response, "topup_create")
    assert not TopUp.objects.filter(provider_account__organization=t.org).exists()
    return [refused_line(b, "provider account", b.account.pk)] * 2


@form_case()
def topup_import_naming_a_globex_account(t: Tenancy, b: OrgB, client: Any) -> list[str]:
    """The CSV's account column is a slug: Globex's is an unknown account, reported on its line."""
    csv = f"account,amount,created_at,order_ref\n{b.account.slug},10,2026-11-01,acme-1\n"
    response = client.post(
        reverse("topup_import", args=["acme"]), {"file": SimpleUploadedFile("t.csv", csv.encode())}
    )
    assert response.status_code == 200
    result = response.context["result"]
    assert result is not None and result.created == 0 and len(result.errors) == 1, result
    assert not TopUp.objects.filter(provider_account__organization=t.org).exists()
    return []


@form_case(("ImportForm", "account"))
def usage_import_into_a_globex_account_or_project(t: Tenancy, b: OrgB, client: Any) -> list[str]:
    from usage.tasks import run_import

    url = reverse("import_create", args=["acme"])
    good = "request_id,occurred_at,model,cost,project\nr1,2026-11-10T10:00:00Z,gpt-4o,0.5,{project}\n"
    response = client.post(
        url, {"file": SimpleUploadedFile("u.csv", good.encode()), "account": b.account.slug}
    )
    assert response.status_code == 400 and "Select a valid choice" in body(response)
    assert_shows_nothing_of(b, response, "import_create account")
    assert not ImportJob.objects.filter(organization=t.org).exists()
    # A row naming Globex's project (by slug) is a bad row of Acme's import, never a Globex row.
    content = good.format(project=b.project.slug)
    response = client.post(url, {"file": SimpleUploadedFile("u.csv", content.encode())})
    assert response.status_code == 302
    job = ImportJob.objects.get(organization=t.org)
    run_import.apply(args=(job.pk,))
    job.refresh_from_db()
    assert (job.rows_good, job.rows_bad) == (0, 1), job.error
    detail = client.get(reverse("import_detail", args=["acme", job.public_id]))
    assert "no project" in body(detail)
    assert not UsageRecord.objects.filter(organization=t.org).exists()
    return [refused_line(b, "provider account", b.account.slug)]


@form_case(("IngestTokenForm", "project"))
def token_create_for_a_globex_project(t: Tenancy, b: OrgB, client: Any) -> list[str]:
    data = {"name": "acme pusher", "project": b.project.slug}
    response = client.post(reverse("token_create", args=["acme"]), data)
    assert response.status_code == 400 and "Select a valid choice" in body(response)
    assert_shows_nothing_of(b, response, "token_create")
    assert not IngestToken.objects.filter(organization=t.org).exists()
    return [refused_line(b, "project", b.project.slug)]


@form_case()
def member_add_of_a_globex_member(t: Tenancy, b: OrgB, client: Any) -> list[str]:
    """By design any existing account can be added by name; doing so shows and changes nothing of Globex."""
    response = client.post(
        reverse("member_create", args=["acme"]), {"who": b.member.username, "role": "viewer"}
    )
    assert response.status_code == 302
    page = client.get(reverse("member_list", args=["acme"]))
    assert b.member.username in body(page)  # the new Acme member, by the name the admin typed
    # The new member's name as the page prints it, and inside the remove button's confirm() text.
    text = body(page).replace(b.member.username, "").replace(b.member.username.replace("-", "\\u002D"), "")
    assert not [c for c in b.canaries() if c in text], "members page shows Globex data"
    return []


@pytest.mark.parametrize("case", sorted(FORM_CASES))
def test_globex_ids_in_form_bodies_are_form_errors_logged_and_change_nothing(
    case: str,
    tenancy: Tenancy,
    unchanged: OrgB,
    settings: Any,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.QB_IMPORT_DIR = tmp_path / "imports"
    with caplog.at_level(logging.INFO, logger="quotaboard.audit"):
        expected = FORM_CASES[case].run(tenancy, unchanged, client_for(tenancy.admin))
    assert _audit_lines(caplog) == expected
