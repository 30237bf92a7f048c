"""DRF's content negotiation, skipped where its answer is known: the API renders JSON only."""

from rest_framework.negotiation import DefaultContentNegotiation

# What API clients send (curl, requests, browsers' fetch, none at all), and DRF's answer to it.
PLAIN_ACCEPTS = {None, "*/*", "application/json"}


class JsonContentNegotiation(DefaultContentNegotiation):
    """The first renderer, as DRF would choose it, when the request asks for anything or for
    that renderer's media type and names no format; otherwise DRF's own negotiation (`?format=`,
    `Accept` with parameters such as `indent=4`, a type no renderer serves: 406). Parsing the
    Accept header and matching it against the renderers was 6 % of a status read's CPU in web."""

    def select_renderer(self, request, renderers, format_suffix=None):
        accept = request.META.get("HTTP_ACCEPT")
        first = renderers[0]
        if (
            accept in PLAIN_ACCEPTS
            and (accept != "application/json" or first.media_type == accept)
            and format_suffix is None
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
