from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from .selectors import memberships_for_user


def navigation(request: HttpRequest) -> dict[str, Any]:
    """Expose the user's organizations to the layout (the switcher); one query, only when signed in."""
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    return {"nav_memberships": memberships_for_user(request.user)}
