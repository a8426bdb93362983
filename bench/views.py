"""The bare Django view: the ceiling REST single is measured against (served only with LPR_BENCH_VIEWS=1).

It runs under the same Daphne, middleware and settings as the ingest view,
reads the request body as that view does, and does nothing else.
"""

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def bare(request: HttpRequest) -> JsonResponse:
    request.body
    return JsonResponse({"ok": True})
