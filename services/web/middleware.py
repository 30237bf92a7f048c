"""Request guards that must hold for every view, API or not."""

import io

from django.conf import settings
from django.http import JsonResponse

from web.errors import service_unavailable, unavailable_service


class ServiceUnavailableMiddleware:
    """A view that hit a down database or Redis answers 503 JSON (also with DEBUG on)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        service = unavailable_service(exception)
        return service_unavailable(service) if service else None


class BodySizeLimitMiddleware:
    """Refuse bodies over DATA_UPLOAD_MAX_MEMORY_SIZE with 413 before anything reads them.

    Django only enforces that limit for form data; DRF's JSON parser reads the stream as is. A
    chunked body (no Content-Length), which Django would not read at all, is read here up to it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            return JsonResponse(
                {"error": "bad_request", "detail": "Invalid Content-Length header."}, status=400
            )
        if not length and "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower():
            # Django reads no body without a Content-Length (the proxy streams a body of unknown
            # size chunked): read it here, at most one byte past the limit.
            body = request.META["wsgi.input"].read(-1 if limit is None else limit + 1)
            if limit is not None and len(body) > limit:
                return self.too_large(f"more than {limit} bytes", limit)
            request.META["CONTENT_LENGTH"] = str(len(body))
            request._stream = io.BytesIO(body)
        elif limit is not None and length > limit:
            return self.too_large(f"{length} bytes", limit)
        return self.get_response(request)

    @staticmethod
    def too_large(size: str, limit: int) -> JsonResponse:
        return JsonResponse(
            {"error": "payload_too_large", "detail": f"Request body is {size}; the limit is {limit} bytes."},
            status=413,
        )
