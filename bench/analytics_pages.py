"""Server time of every analytics page on the demo data (SQLite), through the Django test Client.

Usage: QB_VAR_DIR=/path/with/seeded/db python bench/analytics_pages.py [repeats]
(seed first with `python manage.py seed_demo`). Prints p50 / p95 milliseconds per page; not a test.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Plain static URLs: timing the views, not a collectstatic manifest.
os.environ.setdefault("QB_COLLECTSTATIC", "0")

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.test import Client  # noqa: E402
from django.urls import reverse  # noqa: E402

from projects.models import ApiKey, Organization, Project  # noqa: E402
from usage.models import UsageRecord  # noqa: E402
from usage.panels import PANELS  # noqa: E402

settings.ALLOWED_HOSTS = ["*"]
REPEATS = int(sys.argv[1]) if len(sys.argv) > 1 else 15


def main() -> None:
    org = Organization.objects.get(slug="acme-ai")
    print(f"{UsageRecord.objects.filter(organization=org).count():,} usage records in {org.slug}")
    from django.contrib.auth import get_user_model

    client = Client()
    client.force_login(get_user_model().objects.get(username="admin"))
    project = Project.objects.filter(organization=org).order_by("slug").first()
    key = ApiKey.objects.filter(organization=org).exclude(last_used_at=None).order_by("-last_used_at").first()
    assert project and key
    pages: list[tuple[str, str, dict[str, str], bool]] = [
        ("overview", reverse("overview", args=[org.slug]), {}, False),
        ("explorer (30d)", reverse("usage_explorer", args=[org.slug]), {}, False),
        ("explorer (90d) htmx body", reverse("usage_explorer", args=[org.slug]), {"preset": "90d"}, True),
        ("project page", reverse("project_detail", args=[org.slug, project.slug]), {}, False),
        ("key page", reverse("key_detail", args=[org.slug, key.public_id]), {}, False),
        ("project list (90d)", reverse("project_list", args=[org.slug]), {"preset": "90d"}, False),
        ("key list (90d)", reverse("key_list", args=[org.slug]), {"preset": "90d"}, False),
        ("data sources", reverse("data_sources", args=[org.slug]), {}, False),
    ]
    for name in PANELS:
        for preset in ("30d", "90d"):
            pages.append(
                (
                    f"panel {name} ({preset})",
                    reverse("usage_explorer", args=[org.slug]),
                    {"panel": name, "preset": preset},
                    True,
                )
            )
        pages.append(
            (
                f"project panel {name} (90d)",
                reverse("project_detail", args=[org.slug, project.slug]),
                {"panel": name, "preset": "90d"},
                True,
            )
        )
        pages.append(
            (
                f"key panel {name} (90d)",
                reverse("key_detail", args=[org.slug, key.public_id]),
                {"panel": name, "preset": "90d"},
                True,
            )
        )
    print(f"{'page':40} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for label, url, params, htmx in pages:
        headers = {"HX-Request": "true"} if htmx else {}
        times = []
        for _ in range(REPEATS + 1):
            t0 = time.perf_counter()
            response = client.get(url, params, headers=headers)
            if hasattr(response, "streaming_content"):
                b"".join(response.streaming_content)
            times.append((time.perf_counter() - t0) * 1000)
            assert response.status_code == 200, (label, response.status_code)
        times = sorted(times[1:])  # the first request warms caches
        p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
        flag = "  SLOW" if p95 > 250 else ""
        print(f"{label:40} {statistics.median(times):8.1f} {p95:8.1f} {times[-1]:8.1f}{flag}", flush=True)


if __name__ == "__main__":
    main()
