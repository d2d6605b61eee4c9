"""The decision record and the declare_property arguments, as the filter
encodes them by hand (src/metadata.rs), decoded by the official protobuf
runtime: what Envoy's C++ parser will read. No Envoy needed; the encodings
come from `cargo run --example metadata_encodings` with fixed inputs, which
this file knows."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf import struct_pb2, unknown_fields

ROOT = Path(__file__).resolve().parents[2]
ORG_A = "1.2.246.562.10.00000000001"
ORG_B = "1.2.246.562.10.00000000002"
ORG_C = "1.2.246.562.10.00000000003"
ROLE = "urn:mpass.id:role"
STRUCT_SCHEMA = "type.googleapis.com/google.protobuf.Struct"


@pytest.fixture(scope="module")
def encodings() -> dict[str, bytes]:
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--example", "metadata_encodings"],
        cwd=ROOT, check=True, capture_output=True, text=True,
    ).stdout
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    return {line["case"]: bytes.fromhex(line["hex"]) for line in lines}


def assert_no_unknown_fields(msg) -> None:
    """Every byte was a field the official schema knows, at every level."""
    assert len(unknown_fields.UnknownFieldSet(msg)) == 0, type(msg).__name__
    if isinstance(msg, struct_pb2.Struct):
        for value in msg.fields.values():
            assert_no_unknown_fields(value)
    elif isinstance(msg, struct_pb2.ListValue):
        for value in msg.values:
            assert_no_unknown_fields(value)
    elif isinstance(msg, struct_pb2.Value):
        kind = msg.WhichOneof("kind")
        assert kind is not None, "a Value with no kind set"
        if kind in ("struct_value", "list_value"):
            assert_no_unknown_fields(getattr(msg, kind))


def decode_struct(raw: bytes) -> dict:
    msg = struct_pb2.Struct()
    msg.ParseFromString(raw)
    assert_no_unknown_fields(msg)
    return json_format.MessageToDict(msg)


RECORD_KEYS = {
    "provider", "decision", "reason", "status", "released", "withheld", "contract_version",
    "subject", "issuer", "kid", "alg", "stripped_tokens", "attributes", "shadow",
}


def test_an_allowed_request_publishes_released_roles_for_rbac(encodings):
    record = decode_struct(encodings["allow"])
    assert set(record) == RECORD_KEYS
    assert record["provider"] == "studeo"
    assert record["decision"] == "allow"
    assert record["reason"] == "released"
    assert record["status"] is None
    assert record["released"] == [ROLE, "given_name"]
    assert record["withheld"] == ["email", "never_releasable"]
    assert record["contract_version"] == "2026-11"
    assert record["subject"] == "p:4f2a"
    assert (record["issuer"], record["kid"], record["alg"]) == (
        "https://mpass-proxy.csc.fi", "k1", "RS256")
    assert record["stripped_tokens"] == 1
    assert record["attributes"] == {
        "role_codes": ["2", "3", "6"],
        "organisations": [ORG_A, ORG_B, ORG_C],
        "org_roles": [f"{ORG_A}:2", f"{ORG_B}:6", f"{ORG_C}:3"],
    }


def test_no_withheld_name_or_value_appears_in_attributes(encodings):
    allow = decode_struct(encodings["allow"])
    attrs = json.dumps(allow["attributes"])
    for name in allow["withheld"]:
        assert name not in attrs
    # The e-mail value was offered to the record but e-mail was withheld.
    assert b"oppilas@example.fi" not in encodings["allow"]
    deny = decode_struct(encodings["deny"])
    assert deny["withheld"] == [ROLE]
    assert deny["attributes"] == {"role_codes": [], "organisations": [], "org_roles": []}
    for org in (ORG_A, ORG_B, ORG_C):
        assert org.encode() not in encodings["deny"]


def test_a_refusal_carries_its_status_and_reason(encodings):
    deny = decode_struct(encodings["deny"])
    assert deny["decision"] == "deny"
    assert deny["reason"] == "organisation_not_permitted"
    assert deny["status"] == 403


def test_an_unmatched_request_has_every_key_with_nulls_and_empty_lists(encodings):
    record = decode_struct(encodings["unmatched"])
    assert set(record) == RECORD_KEYS
    assert record["decision"] == "unmatched"
    for key in ("provider", "status", "contract_version", "subject", "issuer", "kid", "alg", "shadow"):
        assert record[key] is None, key
    assert record["released"] == [] and record["withheld"] == []
    assert record["stripped_tokens"] == 0


def test_unicode_numbers_empty_and_nested_values_decode_exactly(encodings):
    tree = decode_struct(encodings["tree"])
    assert tree == {
        "unicode": "Äiti ja ö 🦀 中文",
        "empty_list": [],
        "empty_struct": {},
        "numbers": [0, -1.5, 1e300, 65535],
        "flags": [True, False, None],
        "nested": {"inner": {"deep": ["ü"]}},
        "long": "x" * 300,
    }


def declare_property_class():
    """DeclarePropertyArguments as Envoy declares it in
    source/extensions/common/wasm/ext/declare_property.proto, built here from
    the field and enum numbers of that file."""
    f = descriptor_pb2.FileDescriptorProto(
        name="declare_property.proto", package="envoy.source.extensions.common.wasm",
        syntax="proto3")
    wasm_type = f.enum_type.add(name="WasmType")
    for name, number in (("Bytes", 0), ("String", 1), ("FlatBuffers", 2), ("Protobuf", 3)):
        wasm_type.value.add(name=name, number=number)
    span = f.enum_type.add(name="LifeSpan")
    for name, number in (("FilterChain", 0), ("DownstreamRequest", 1),
                         ("DownstreamConnection", 2)):
        span.value.add(name=name, number=number)
    msg = f.message_type.add(name="DeclarePropertyArguments")
    T = descriptor_pb2.FieldDescriptorProto
    pkg = ".envoy.source.extensions.common.wasm."
    for name, number, ftype, type_name in (
        ("name", 1, T.TYPE_STRING, None),
        ("readonly", 2, T.TYPE_BOOL, None),
        ("type", 3, T.TYPE_ENUM, pkg + "WasmType"),
        ("schema", 4, T.TYPE_BYTES, None),
        ("span", 5, T.TYPE_ENUM, pkg + "LifeSpan"),
    ):
        field = msg.field.add(name=name, number=number, type=ftype, label=T.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName(pkg[1:] + "DeclarePropertyArguments"))


@pytest.mark.parametrize("case,readonly", [("declare", False), ("declare_readonly", True)])
def test_the_declaration_is_a_protobuf_struct_property_of_the_filter_chain(
        encodings, case, readonly):
    msg = declare_property_class()()
    msg.ParseFromString(encodings[case])
    assert len(unknown_fields.UnknownFieldSet(msg)) == 0
    assert msg.name == "mpass_guard"
    assert msg.readonly is readonly
    assert msg.DESCRIPTOR.fields_by_name["type"].enum_type.values_by_number[msg.type].name \
        == "Protobuf"
    assert msg.schema == STRUCT_SCHEMA.encode()
    assert msg.DESCRIPTOR.fields_by_name["span"].enum_type.values_by_number[msg.span].name \
        == "FilterChain"
