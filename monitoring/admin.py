from django.contrib import admin

from monitoring.models import EdgeWindow


@admin.register(EdgeWindow)
class EdgeWindowAdmin(admin.ModelAdmin):
    list_display = ("window_end", "node", "source", "destination", "requests", "errors")
