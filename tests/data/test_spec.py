"""DataSpec: one grammar for the CLI and the pipeline; the source records its canonical spec."""

from __future__ import annotations

import pytest

from interp.data.spec import DataSpec, DataSpecError
from interp.pipeline import load_source


def test_forms_and_canonical_text(tmp_path) -> None:
    assert DataSpec.parse("synthetic") == DataSpec("synthetic", seed=0)
    assert str(DataSpec.parse("synthetic")) == "synthetic:0" and str(DataSpec.parse("synthetic:-3")) == "synthetic:-3"
    spec = DataSpec.parse(f"pascal:{tmp_path},{tmp_path}")
    assert spec == DataSpec("pascal", root=str(tmp_path), splits=str(tmp_path)) and spec.check() is spec
    assert str(spec) == f"pascal:{tmp_path},{tmp_path}" and DataSpec.parse(spec) is spec


@pytest.mark.parametrize("text, match", [("synthetic:abc", "seed must be an integer"), ("imagenet", "unknown data source"),
                                         ("pascal:", "names no VOC2012")])
def test_bad_specs_are_named(text, match) -> None:
    with pytest.raises(DataSpecError, match=match):
        DataSpec.parse(text)


def test_missing_directory_is_named(tmp_path) -> None:
    with pytest.raises(DataSpecError, match="no directory"):
        DataSpec.parse(f"pascal:{tmp_path / 'voc'}").check()


def test_the_pipeline_loads_the_parsed_spec() -> None:
    source = load_source(DataSpec.parse("synthetic:7"))
    assert source.seed == 7 and source.spec == "synthetic:7"
    assert load_source("synthetic:7").spec == "synthetic:7"
