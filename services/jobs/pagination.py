"""Pagination of GET /api/jobs/: ?page=N, and ?page_size=M up to a bound."""

from rest_framework.pagination import PageNumberPagination


class JobPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200
