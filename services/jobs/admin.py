"""Admin: job records (read-only: jobs are submitted through the API)."""

from django.contrib import admin

from jobs.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "kind", "name", "run", "submitted_at", "cancelled_at")
    list_filter = ("kind",)
    search_fields = ("id", "name", "user__username")
    date_hierarchy = "submitted_at"
    readonly_fields = [field.name for field in Job._meta.fields]

    def has_add_permission(self, request):
        return False
