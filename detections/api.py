"""Operator API for detections (CONTRACT section 3): reads or passages, JSON pages or a streamed CSV."""

from django.core.handlers.asgi import ASGIRequest
from rest_framework import renderers, serializers, viewsets

from . import export
from .search import InvalidSearch, Query, search, search_passages
from .serializers import DetectionFilter, DetectionSerializer, PassageSerializer


class _CSVRenderer(renderers.BaseRenderer):
    """Lets `?format=csv` through content negotiation; the CSV itself is streamed by `export`."""

    media_type, format = "text/csv", "csv"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return b""


class DetectionViewSet(viewsets.ReadOnlyModelViewSet):
    serializer_class = DetectionSerializer
    renderer_classes = [renderers.JSONRenderer, renderers.BrowsableAPIRenderer, _CSVRenderer]

    def get_queryset(self):
        if self.action != "list":
            return search(Query())
        passages = self._params().get("view") == "passages"
        return _run(search_passages if passages else search, self._query())

    def get_renderers(self):
        if self.action == "retrieve":  # `?format=csv` exports a search; one read is JSON only
            return [r for r in super().get_renderers() if not isinstance(r, _CSVRenderer)]
        return super().get_renderers()

    def get_serializer_class(self):
        if self.action == "list" and self._params().get("view") == "passages":
            return PassageSerializer
        return DetectionSerializer

    def list(self, request, *args, **kwargs):
        if request.query_params.get("format") == "csv":
            reads = _run(search, self._query())  # passages or not, the export lists reads (with their passage)
            return export.csv_response(reads, asgi=isinstance(request._request, ASGIRequest))
        return super().list(request, *args, **kwargs)

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        # Errors are JSON in the contract's format, even for `?format=csv`.
        self.request.accepted_renderer, self.request.accepted_media_type = renderers.JSONRenderer(), "application/json"
        return response

    def _params(self) -> dict:
        if not hasattr(self, "_validated"):
            params = DetectionFilter(data=self.request.query_params)
            params.is_valid(raise_exception=True)
            self._validated = dict(params.validated_data)
        return self._validated

    def _query(self) -> Query:
        return Query(**{k: v for k, v in self._params().items() if k != "view"})


def _run(find, query: Query):
    try:
        return find(query)
    except InvalidSearch as exc:
        raise serializers.ValidationError({exc.field: exc.detail}) from None
