"""Serializer helpers shared by the apps' APIs."""

from __future__ import annotations

import copy

from rest_framework import serializers


class CachedFieldsModelSerializer(serializers.ModelSerializer):
    """A ModelSerializer that introspects its model once per class, not once per response.

    ``ModelSerializer.get_fields`` maps every model field to a serializer field
    (kwargs, validators, choices) each time a serializer is made: about two
    thirds of serialising a one-row API list. The result depends only on the
    class (its Meta and declared fields), so it is built once and each
    instance gets a deep copy, which is what DRF does with declared fields
    anyway: no instance shares a bound field with another. A subclass whose
    fields depend on the instance (the request, a flag) must not use this.

    The copy is shallow where that is enough: binding a field to its
    serializer only sets attributes on the field itself (name, parent,
    source), and DRF's deep copy re-runs every field's ``__init__``, which
    was a seventh of a served job list. A field that holds another field or
    serializer (a list's child, a nested serializer) binds that one to
    itself, so it is still copied deeply.
    """

    def get_fields(self):
        cls = type(self)
        # The class's own dict: a subclass builds its own set, never its parent's.
        fields = cls.__dict__.get("_built_fields")
        if fields is None:
            fields = super().get_fields()
            cls._built_fields = fields
        return {name: _copy_field(field) for name, field in fields.items()}


def _copy_field(field):
    if isinstance(field, serializers.BaseSerializer) or any(
        hasattr(field, name) for name in ("child", "child_relation")
    ):
        return copy.deepcopy(field)
    return copy.copy(field)


class ChoiceLabelField(serializers.CharField):
    """The label of a model field's choice, as ``get_<field>_display()`` says it (read-only).

    ``CharField(source="get_state_display")`` makes DRF check on every row
    whether the method takes arguments (``inspect.signature``), and Django's
    method rebuilds a dict of every choice each call: together a quarter of
    serializing a job list of 50. Here the choices are mapped once per
    model field and each label is translated when it is written, so it
    follows the request's language as before. ``source`` names the field
    (``ChoiceLabelField(source="state")``); a value that is not a choice is
    shown as it is, as Django's method does.
    """

    _labels: dict[tuple[type, str], dict] = {}

    def __init__(self, **kwargs):
        kwargs["read_only"] = True
        super().__init__(**kwargs)

    def to_representation(self, value):
        model = self.parent.Meta.model
        key = (model, self.source)
        labels = self._labels.get(key)
        if labels is None:
            labels = dict(model._meta.get_field(self.source).flatchoices)
            self._labels[key] = labels
        return str(labels.get(value, value))


class SaidReasonFields(serializers.Serializer):
    """A row's reason (aladdin.lib.said): text in the request's language, and its message.

    ``reason`` is what a person reads (Accept-Language decides the language);
    ``reason_id`` and ``reason_params`` let a script act on the cause without
    parsing text ("" and {} for rows written before reasons had ids, and for
    text the portal has no message for: a staff note, a host's own error).
    """

    reason = serializers.CharField(
        source="reason_text", read_only=True, help_text="Why, in the request's language."
    )
    reason_id = serializers.CharField(
        read_only=True, help_text='The message id, e.g. "workload.oom"; "" when only text.'
    )
    reason_params = serializers.JSONField(
        read_only=True, help_text="The message's parameters (amounts in µDCU, sizes in bytes)."
    )
