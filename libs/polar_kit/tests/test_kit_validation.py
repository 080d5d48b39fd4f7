"""check_field_behavior (google.api.field_behavior): REQUIRED fields set, OUTPUT_ONLY fields
unset, nested ones included."""

from __future__ import annotations

from typing import Any

import pytest
from google.api import field_behavior_pb2
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from polar.repository.v1.repository_pb2 import Repository, Reward
from polar_kit.errors import InvalidArgument
from polar_kit.validation import check_field_behavior

Field = descriptor_pb2.FieldDescriptorProto


def message_class() -> Any:
    """Outer {Inner inner; repeated Inner items} and Inner {string name REQUIRED; string id
    OUTPUT_ONLY; optional bool done OUTPUT_ONLY}."""
    name = "polar_kit_test_field_behavior.proto"
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
        for number, (field, kind) in enumerate(
            [("id", Field.TYPE_STRING), ("done", Field.TYPE_BOOL)], 2
        ):
            output = inner.field.add(
                name=field,
                number=number,
                type=kind,
                label=Field.LABEL_OPTIONAL,
                proto3_optional=kind == Field.TYPE_BOOL,
                oneof_index=0 if kind == Field.TYPE_BOOL else None,
            )
            output.options.Extensions[field_behavior_pb2.field_behavior].append(
                field_behavior_pb2.OUTPUT_ONLY
            )
        inner.oneof_decl.add(name="_done")
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
    check_field_behavior(outer)  # an absent optional message is not looked into
    outer.inner.SetInParent()
    outer.items.add(name="fine")
    outer.items.add()
    with pytest.raises(InvalidArgument) as caught:
        check_field_behavior(outer)
    assert caught.value.violations == [
        ("inner.name", "inner.name is required"),
        ("items[1].name", "items[1].name is required"),
    ]
    outer.inner.name = "set"
    outer.items[1].name = "set"
    check_field_behavior(outer)


def test_output_only_fields_set_by_the_caller_are_refused_by_name() -> None:
    outer = message_class()()
    outer.inner.name = "fine"
    outer.items.add(name="fine", id="server-made")
    outer.items.add(name="fine", done=False)  # explicitly present, even at its default
    with pytest.raises(InvalidArgument) as caught:
        check_field_behavior(outer)
    assert [field for field, _ in caught.value.violations] == ["items[0].id", "items[1].done"]
    assert caught.value.violations[0][1] == (
        "items[0].id is output only: the server sets it, leave it unset"
    )
    outer.items[0].ClearField("id")
    outer.items[1].ClearField("done")
    check_field_behavior(outer)


def test_the_resources_server_set_fields_are_output_only() -> None:
    """The real contracts: a resource sent back as read (ids, timestamps, computed fields) is
    refused, field by field; its IMMUTABLE and ordinary fields are not this check's concern."""
    read = Repository(id="r-1", external_id=7, name="polar", organization_id="o-1")
    read.created_at.GetCurrentTime()
    with pytest.raises(InvalidArgument) as caught:
        check_field_behavior(read)
    assert [field for field, _ in caught.value.violations] == ["id", "created_at"]
    with pytest.raises(InvalidArgument) as caught:
        check_field_behavior(Reward(issue_id="i-1", state="paid", repository_id="r-1"))
    assert [field for field, _ in caught.value.violations] == ["repository_id", "state"]
    check_field_behavior(Repository(external_id=7, name="polar", organization_id="o-1"))
