"""check_required: REQUIRED (google.api.field_behavior) fields, nested ones included."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from polar_kit.errors import InvalidArgument
from polar_kit.validation import check_required

Field = descriptor_pb2.FieldDescriptorProto


def message_class() -> Any:
    """Outer {Inner inner; repeated Inner items; int32 n} and Inner {string name REQUIRED}."""
    name = "polar_kit_test_required.proto"
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(name)
    except KeyError:
        f = descriptor_pb2.FileDescriptorProto(
            name=name,
            package="polarkittest",
            syntax="proto3",
            dependency=["google/api/field_behavior.proto"],
        )
        inner = f.message_type.add(name="Inner")
        required = inner.field.add(
            name="name", number=1, type=Field.TYPE_STRING, label=Field.LABEL_OPTIONAL
        )
        required.options.Extensions[field_behavior_pb2.field_behavior].append(
            field_behavior_pb2.REQUIRED
        )
        outer = f.message_type.add(name="Outer")
        for number, (field, label) in enumerate(
            [("inner", Field.LABEL_OPTIONAL), ("items", Field.LABEL_REPEATED)], 1
        ):
            outer.field.add(
                name=field,
                number=number,
                type=Field.TYPE_MESSAGE,
                type_name=".polarkittest.Inner",
                label=label,
            )
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("polarkittest.Outer"))


def test_required_fields_of_present_messages_and_list_items_are_checked() -> None:
    outer = message_class()()
    check_required(outer)  # an absent optional message is not looked into
    outer.inner.SetInParent()
    outer.items.add(name="fine")
    outer.items.add()
    with pytest.raises(InvalidArgument) as caught:
        check_required(outer)
    assert caught.value.violations == [
        ("inner.name", "inner.name is required"),
        ("items[1].name", "items[1].name is required"),
    ]
    outer.inner.name = "set"
    outer.items[1].name = "set"
    check_required(outer)
