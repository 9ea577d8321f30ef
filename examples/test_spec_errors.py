"""A bad spec or image is refused in one line naming the node and the field, before
anything exists.

The same holds for markers: a test whose ``@pytest.mark.home`` spec is wrong fails its
setup with that line, and its home is never created.
"""

import pytest

from pytest_cirque.core.errors import ImageError, SpecError

BAD_SPECS = [
    ({"hub": {"capabilities": ["Teleport"]}}, "unknown capability 'Teleport'"),
    ({"hub": {"capabilities": [{"TrafficControl": {"loss": 150}}]}}, "loss"),
    ({"hub": {"imgae": "base"}}, "unknown field 'imgae'"),
]


@pytest.mark.parametrize(("spec", "message"), BAD_SPECS)
def test_bad_spec_is_one_line(home_factory, spec, message):
    with pytest.raises(SpecError, match=message) as error:
        home_factory(spec)
    assert "\n" not in str(error.value)
    assert "hub" in str(error.value)


def test_an_unknown_image_is_refused_before_anything_is_made(home_factory):
    with pytest.raises(ImageError, match="no-such-image"):
        home_factory({"hub": {"image": "example-no-such-image:1"}})
