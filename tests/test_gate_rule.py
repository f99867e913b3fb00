"""The validation gate's rule (helpers/gate.py `verdict`), which notebook 07 writes out and the CI job applies: on
the same data a challenger must be no worse than the champion; only one that learned from newer data may be a
little worse; and an absolute limit refuses a bad model whatever the champion scores."""
from helpers.gate import Thresholds, verdict

RULE = Thresholds(max_rmse=8.0, max_worse_than_champion=0.02)


def test_on_the_same_data_a_hair_worse_is_refused_and_equal_at_the_gates_precision_passes():
    passed, reason = verdict(6.522, 6.520, fresher=False, thresholds=RULE, champion_version="4")
    assert not passed and reason == ("held-out RMSE 6.522 is worse than the champion's 6.520 (version 4), "
                                     "on the same data")
    assert verdict(6.5203, 6.5196, fresher=False, thresholds=RULE)[0]  # both 6.520: the same model retrained
    assert verdict(6.400, 6.520, fresher=False, thresholds=RULE) == (True, "held-out RMSE 6.400 against the "
                                                                           "champion's 6.520")


def test_on_newer_data_the_tolerance_applies():
    assert verdict(6.640, 6.520, fresher=True, thresholds=RULE) == (
        True, "held-out RMSE 6.640 against the champion's 6.520, on newer data")  # 1.8% worse
    passed, reason = verdict(6.700, 6.520, fresher=True, thresholds=RULE, champion_version="4")  # 2.8% worse
    assert not passed and reason.endswith("worse than the champion's 6.520 (version 4) by more than 2%")


def test_the_absolute_limit_refuses_first_and_a_first_version_has_no_champion_to_beat():
    assert verdict(8.2, 9.0, fresher=True, thresholds=RULE) == (False, "held-out RMSE 8.200 is above the limit of "
                                                                       "8.000")
    assert verdict(7.0, None, fresher=False, thresholds=RULE) == (True, "held-out RMSE 7.000, no champion to beat")
