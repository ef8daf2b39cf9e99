"""The YAML and JSON writers: what they write reads back as what was given."""

from __future__ import annotations

import json
from typing import Any

import yaml
from ansible_collections.vmmesh.mesh.plugins.module_utils.render_yaml import to_json, to_yaml, yaml_items
from hypothesis import given, settings
from hypothesis import strategies as st

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.text(max_size=20),
    st.sampled_from(["yes", "No", "ON", "off", "null", "~", "0x10", "1e3", "12:30", "@type", "- x", "a: b", "#", ""]),
)
_keys = st.one_of(st.text(min_size=1, max_size=12), st.sampled_from(["on", "y", "@type", "true", "1", "a b"]))
_data = st.recursive(
    _scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(_keys, children, max_size=4)),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(_data)
def test_yaml_round_trips(data: Any) -> None:
    assert yaml.safe_load(to_yaml(data)) == data


@settings(max_examples=200, deadline=None)
@given(_data)
def test_json_round_trips(data: Any) -> None:
    assert json.loads(to_json(data)) == data


def test_yaml_layout() -> None:
    text = to_yaml({"a": [{"b": 1, "c": [True, None]}, "on"], "@type": "x:y", "e": {}, "f": []}, header="Title")
    assert text == (
        '# Title\na:\n  - b: 1\n    c:\n      - true\n      - null\n  - "on"\n"@type": "x:y"\ne: {}\nf: []\n'
    )
    assert yaml_items([{"a": 1}], "  ") == ["  - a: 1"]


def test_json_layout_keeps_records_on_one_line() -> None:
    text = to_json({"b": [{"y": 1, "x": "é"}], "a": {"k": [1, 2]}, "c": []})
    assert text == '{\n  "a": {\n    "k": [1, 2]\n  },\n  "b": [\n    {"x": "é", "y": 1}\n  ],\n  "c": []\n}\n'
