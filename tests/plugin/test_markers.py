"""The plugin's markers: registered with descriptions, arguments checked before any fixture
runs, and one-line setup errors naming the test and the marker."""

from __future__ import annotations

import pytest


def test_markers_are_registered_with_descriptions(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(
        [
            "@pytest.mark.home(spec, [*], name=None): the nodes of the test's `home` fixture*",
            "@pytest.mark.capabilities([*]capabilities, nodes=None): add capabilities*",
            "@pytest.mark.wifi([*], stations=None, [*][*]ap): the test's home has a WiFi medium*",
            "@pytest.mark.thread([*], nodes=None, channel=None, panid=None, form=True): *Thread*",
        ]
    )


def test_strict_markers_accepts_the_radio_markers_and_m_selects_them(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.wifi
        def test_wifi():
            pass

        @pytest.mark.thread
        def test_thread():
            pass

        def test_plain():
            pass
        """
    )
    result = pytester.runpytest("--strict-markers", "--collect-only", "-q", "-m", "wifi")
    result.stdout.fnmatch_lines(["*::test_wifi", "*1/3 tests collected (2 deselected)*"])
    assert result.ret == 0


BAD_MARKERS = [
    ("@pytest.mark.home()", "@pytest.mark.home: missing 1 required positional argument: 'spec'"),
    (
        "@pytest.mark.home({}, nme='x')",
        "@pytest.mark.home: got an unexpected keyword argument 'nme'",
    ),
    (
        "@pytest.mark.home(42)",
        "@pytest.mark.home: spec must be a mapping of node name to node spec or a*, not int",
    ),
    (
        "@pytest.mark.home({}, name='')",
        "@pytest.mark.home: name must be a non-empty string, not ''",
    ),
    ("@pytest.mark.capabilities()", "@pytest.mark.capabilities: give at least one capability*"),
    (
        "@pytest.mark.capabilities(3)",
        "@pytest.mark.capabilities: each capability is a name or a {name: params} mapping, not 3",
    ),
    (
        "@pytest.mark.capabilities('LanAccess', nodes='hub')",
        "@pytest.mark.capabilities: nodes must be a list of node names, not 'hub'",
    ),
    (
        "@pytest.mark.capabilities('LanAccess', node=['hub'])",
        "@pytest.mark.capabilities: got an unexpected keyword argument 'node'",
    ),
    (
        "@pytest.mark.thread(channel=30)",
        "@pytest.mark.thread: capability Thread field 'channel': must be an 802.15.4 channel*",
    ),
    (
        "@pytest.mark.thread(panid='0x1ffff')",
        "@pytest.mark.thread: capability Thread field 'panid': must be a 16-bit PAN ID*",
    ),
    (
        "@pytest.mark.thread(nodes='hub')",
        "@pytest.mark.thread: nodes must be a list of node names, not 'hub'",
    ),
    (
        "@pytest.mark.thread(nodes=['hub', 'nope'])",
        "@pytest.mark.thread: nodes=[[]'nope'[]] are not in the home (its nodes: hub)*",
    ),
    ("@pytest.mark.thread(form='yes')", "@pytest.mark.thread: form must be True or False*"),
    ("@pytest.mark.thread('hub')", "@pytest.mark.thread: takes 0 positional arguments*"),
]


@pytest.mark.parametrize(("decorator", "message"), BAD_MARKERS)
def test_bad_marker_arguments_fail_setup_in_one_line(
    pytester: pytest.Pytester, decorator: str, message: str
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture
        def cirque():
            raise AssertionError("the cirque service must not be started for a bad marker")
        """
    )
    pytester.makepyfile(
        f"""
        import pytest

        @pytest.mark.home({{"hub": {{}}}})
        {decorator}
        def test_marked(home):
            raise AssertionError("the test body must not run")
        """
    )
    result = pytester.runpytest("--strict-markers")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [f"test_bad_marker_arguments_fail_setup_in_one_line.py::test_marked: {message}"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*must not*")


def test_capabilities_marker_without_a_home_marker_is_refused(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.capabilities("LanAccess")
        def test_marked():
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*::test_marked: @pytest.mark.capabilities needs a home: add @pytest.mark.home(spec)*"]
    )


def test_home_fixture_without_a_home_marker_fails_in_one_line(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def cirque():
            return object()
        """
    )
    pytester.makepyfile(
        """
        def test_unmarked(home):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*::test_unmarked: the home fixture needs @pytest.mark.home(spec) on the test*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_session_home_without_a_spec_fixture_says_what_to_define(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(scope="session")
        def cirque():
            return object()
        """
    )
    pytester.makepyfile(
        """
        def test_shared(session_home):
            pass
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*session_home needs its spec: define a session-scoped fixture cirque_session_home_spec*"]
    )
