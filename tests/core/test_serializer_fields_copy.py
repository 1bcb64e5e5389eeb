"""CachedFieldsModelSerializer: fields built once per class, each serializer with its own copies."""

from rest_framework import serializers

from aladdin.lib.serializers import CachedFieldsModelSerializer
from billing.models import Plan


class _Child(serializers.Serializer):
    code = serializers.CharField()
    shout = serializers.SerializerMethodField()

    def get_shout(self, obj) -> str:
        # Reads the root's context: a child bound to another root would see its request.
        return obj["code"].upper() + self.context.get("mark", "")


class _PlanSerializer(CachedFieldsModelSerializer):
    label = serializers.SerializerMethodField()
    tags = serializers.ListField(child=serializers.CharField(), source="extra_tags")
    nested = _Child(many=True, source="extra_nested")

    class Meta:
        model = Plan
        fields = ["code", "name", "label", "tags", "nested"]

    def get_label(self, obj) -> str:
        return f"{obj.code}{self.context.get('mark', '')}"


def _plan(code: str) -> Plan:
    plan = Plan(code=code, name=f"Plan {code}")
    plan.extra_tags = [code, "x"]
    plan.extra_nested = [{"code": code}]
    return plan


def test_two_serializers_of_one_class_never_share_a_bound_field():
    # given two serializers of the class, made after its fields were built once
    first = _PlanSerializer(_plan("a"), context={"mark": "!"})
    second = _PlanSerializer(_plan("b"), context={"mark": "?"})
    # when both bind their fields
    a_fields, b_fields = first.fields, second.fields
    # then each field is bound to its own serializer, a list's child and a
    # nested serializer included
    for name in ("code", "label", "tags", "nested"):
        assert a_fields[name] is not b_fields[name]
        assert a_fields[name].parent is first
        assert b_fields[name].parent is second
    assert a_fields["tags"].child is not b_fields["tags"].child
    assert a_fields["nested"].child is not b_fields["nested"].child
    # and the class's built fields stay unbound, for the next serializer
    for field in type(first)._built_fields.values():
        assert getattr(field, "parent", None) is None


def test_each_serializer_renders_with_its_own_context_whatever_the_order():
    # given two serializers bound before either renders
    first = _PlanSerializer(_plan("a"), context={"mark": "!"})
    second = _PlanSerializer(_plan("b"), context={"mark": "?"})
    first.fields, second.fields  # noqa: B018 - bind both first
    # when they render in the other order
    b, a = second.data, first.data
    # then each used its own context, down to the nested serializer
    assert a == {
        "code": "a",
        "name": "Plan a",
        "label": "a!",
        "tags": ["a", "x"],
        "nested": [{"code": "a", "shout": "A!"}],
    }
    assert b["label"] == "b?"
    assert b["nested"] == [{"code": "b", "shout": "B?"}]
