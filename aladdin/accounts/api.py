from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, generics, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from aladdin.lib.api_schema import LIST_ERRORS, NOT_FOUND, error_responses

from . import selectors, services
from .models import Notification
from .phone import mask_phone


class MeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    phone = serializers.CharField(help_text="Masked: +86 138****8000")
    username = serializers.CharField(allow_null=True)
    education = serializers.BooleanField()
    education_status = serializers.CharField()
    language = serializers.CharField()
    date_joined = serializers.DateTimeField()


class MeView(APIView):
    """The authenticated user (the IDE plugin shows who is logged in)."""

    @extend_schema(responses=MeSerializer, operation_id="me")
    def get(self, request):
        user = request.user
        data = {
            "id": user.pk,
            "phone": mask_phone(user.phone),
            "username": user.username,
            "education": user.is_education,
            "education_status": user.education_status,
            "language": user.language,
            "date_joined": user.date_joined,
        }
        return Response(MeSerializer(data).data)


# --- notifications -------------------------------------------------------------------


class NotificationSerializer(serializers.Serializer):
    """A notice as the reader reads it: title and body in the request's language."""

    id = serializers.IntegerField()
    kind = serializers.CharField(
        help_text="What it is about: job-succeeded, job-failed, job-stopped, job-balance, "
        "storage_retention, storage_reclaimed, storage_disk_full, order_paid (older "
        "notices may carry other kinds)."
    )
    message = serializers.CharField(
        allow_null=True,
        help_text="The message id (null for notices stored as text before ids existed).",
    )
    params = serializers.DictField(
        help_text="The message's parameters as stored: amounts in fen or µDCU, sizes in "
        "bytes, times in ISO 8601 ({} for notices stored as text)."
    )
    title = serializers.CharField(help_text="In the request's language.")
    body = serializers.CharField(help_text="In the request's language; may be empty.")
    url = serializers.CharField(
        allow_null=True, help_text="Path of the page it is about (job, orders, storage), or null."
    )
    created_at = serializers.DateTimeField()
    read_at = serializers.DateTimeField(allow_null=True)
    sms = serializers.CharField(help_text='Texted? "" (no), queued, sent, refused, failed.')


def _notification_data(notification) -> dict:
    rendered = notification.rendered
    return NotificationSerializer(
        {
            "id": notification.pk,
            "kind": notification.kind,
            "message": notification.message or None,
            "params": notification.params or {},
            "title": rendered.title,
            "body": rendered.body,
            "url": rendered.url,
            "created_at": notification.created_at,
            "read_at": notification.read_at,
            "sms": notification.sms,
        }
    ).data


class NotificationListQuerySerializer(serializers.Serializer):
    unread = serializers.BooleanField(required=False, allow_null=True, default=None)


class NotificationsView(generics.GenericAPIView):
    serializer_class = NotificationSerializer

    def get_queryset(self):
        query = NotificationListQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        rows = selectors.notifications_for(user=self.request.user)
        if query.validated_data["unread"] is not None:
            rows = rows.filter(read_at__isnull=query.validated_data["unread"])
        return rows

    @extend_schema(
        operation_id="notifications_list",
        parameters=[
            OpenApiParameter("unread", bool, description="1: only unread notices; 0: only read."),
        ],
        responses={
            200: NotificationSerializer(many=True),
            **LIST_ERRORS,
            **error_responses({400: "A bad unread value."}),
        },
    )
    def get(self, request):
        """The user's notices, newest first, paginated, in the request's language."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response([_notification_data(n) for n in page])


class NotificationReadView(APIView):
    @extend_schema(
        operation_id="notifications_read",
        request=None,
        responses={200: NotificationSerializer, **error_responses({404: NOT_FOUND})},
    )
    def post(self, request, pk: int):
        """Mark one notice read (reading it again changes nothing)."""
        try:
            notification = services.notification_mark_read(user=request.user, notification_id=pk)
        except Notification.DoesNotExist:
            raise exceptions.NotFound() from None
        return Response(_notification_data(notification))


class ReadAllSerializer(serializers.Serializer):
    marked = serializers.IntegerField(help_text="How many notices this call marked read.")


class NotificationsReadAllView(APIView):
    @extend_schema(operation_id="notifications_read_all", request=None, responses=ReadAllSerializer)
    def post(self, request):
        """Mark every unread notice read."""
        marked = services.notifications_mark_all_read(user=request.user)
        return Response(ReadAllSerializer({"marked": marked}).data)


notification_urlpatterns = [
    path("notifications", NotificationsView.as_view(), name="api-notifications"),
    path(
        "notifications/read-all",
        NotificationsReadAllView.as_view(),
        name="api-notifications-read-all",
    ),
    path(
        "notifications/<int:pk>/read",
        NotificationReadView.as_view(),
        name="api-notification-read",
    ),
]
