"""A minimal Django project in one module, served through Django's ASGI handler."""

from __future__ import annotations

import django
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="pounce-test-not-secret",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        USE_TZ=True,
    )


def hello(request: HttpRequest, name: str) -> HttpResponse:
    return JsonResponse(
        {
            "hello": name,
            "method": request.method,
            "q": request.GET.get("q"),
            "path": request.path,
        }
    )


urlpatterns = [path("hello/<str:name>/", hello)]

from django.core.asgi import get_asgi_application  # noqa: E402

django.setup(set_prefix=False)
app = get_asgi_application()
