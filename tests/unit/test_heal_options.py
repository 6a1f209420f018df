import pytest

from parel_monitoring.heal.options import HealOptions, parse_options
from parel_monitoring.http import HttpError


def test_defaults_run_everything_for_real():
    assert parse_options(None) == parse_options({}) == HealOptions(False, ("sessions", "jobs", "orphans"), False)


def test_subset_dry_run_and_force():
    options = parse_options({"dryRun": "TRUE", "routines": "jobs, sessions,jobs", "force": "false"})
    assert options == HealOptions(True, ("jobs", "sessions"), False)
    assert parse_options({"dryRun": True, "force": True}).force is True  # schedule input may use JSON booleans


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"dryrun": "true"}, "dryrun"),
        ({"verbose": "1"}, "verbose"),
        ({"dryRun": "yes"}, "dryRun"),
        ({"dryRun": ""}, "dryRun"),
        ({"force": "1"}, "force"),
        ({"routines": ""}, "routines"),
        ({"routines": "sessions,users"}, "routines"),
        ({"routines": "sessions,,jobs"}, "routines"),
        ({"routines": 5}, "routines"),
    ],
)
def test_bad_options_are_a_400_naming_the_parameter(params, parameter):
    with pytest.raises(HttpError) as info:
        parse_options(params)
    assert info.value.status == 400 and info.value.fields["parameter"] == parameter
    assert parameter in info.value.message
