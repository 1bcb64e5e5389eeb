from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

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
