"""ember-v3 layout: 2568 named columns in EMBER2024's group order, registered as version 3."""

from __future__ import annotations

from fedmetamal.features.ember.layout import COLUMNS, GROUP_BY_NAME, GROUPS, WIDTH
from fedmetamal.features.schema import get_schema, schema_names

#: (group, first column, width) as published for EMBER2024 feature version 3.
EXPECTED = [
    ("general", 0, 7),
    ("histogram", 7, 256),
    ("byteentropy", 263, 256),
    ("strings", 519, 177),
    ("header", 696, 74),
    ("section", 770, 224),
    ("imports", 994, 1282),
    ("exports", 2276, 129),
    ("datadirectories", 2405, 34),
    ("richheader", 2439, 33),
    ("authenticode", 2472, 8),
    ("pefilewarnings", 2480, 88),
]


def test_groups_sit_at_the_published_offsets() -> None:
    assert [(g.name, g.start, g.width) for g in GROUPS] == EXPECTED
    assert WIDTH == len(COLUMNS) == 2568
    assert len(set(COLUMNS)) == WIDTH


def test_categorical_columns_are_where_the_ember2024_trainer_expects_them() -> None:
    # EMBER2024's LightGBM example marks these indices categorical.
    categorical = [COLUMNS[i] for i in (2, 3, 4, 5, 6, 701, 702)]
    assert categorical == [
        "general_is_pe",
        *(f"general_start_byte_{i}" for i in range(4)),
        "header_coff_machine",
        "header_optional_subsystem",
    ]


def test_columns_are_named_by_group_and_in_reference_spelling() -> None:
    for group in GROUPS:
        assert COLUMNS[group.start : group.stop] == group.columns
    assert COLUMNS[519:522] == ("strings_numstrings", "strings_avlength", "strings_printables")
    assert COLUMNS[618] == "strings_entropy" and COLUMNS[619] == "strings_.click("
    assert GROUP_BY_NAME["exports"].columns[0] == "exports_hased_0"
    assert COLUMNS[2405:2407] == (
        "datadirectories_EXPORT_size",
        "datadirectories_EXPORT_virtual_address",
    )
    assert COLUMNS[-1] == "pefilewarnings_num_warnings"


def test_ember_v3_is_registered_as_version_3_with_every_column() -> None:
    schema = get_schema("ember-v3")
    assert "ember-v3" in schema_names()
    assert (schema.name, schema.version, schema.width) == ("ember-v3", 3, 2568)
    assert schema.columns == COLUMNS
    assert schema.describe()["columns"] == list(COLUMNS)
