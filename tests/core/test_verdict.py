"""The build's verdict: does the selection beat random subsets and the full pool, with intervals?"""

import numpy as np

from dataselect.evaluation import ArmResult, RandomArms, verdict


def arm(name: str, correct: np.ndarray) -> ArmResult:
    accuracy = float(correct.mean())
    return ArmResult(name, "tfidf_logreg", 100, accuracy, accuracy - 0.02, accuracy + 0.02, accuracy, {}, [], correct)


def arms(selected_right: int, full_right: int, random_interval: tuple[float, float], n: int = 400) -> dict:
    selected = np.arange(n) < selected_right
    full = np.arange(n) < full_right  # the same records first: the paired differences are all one-sided
    random = RandomArms("random", [1, 2], [], float(np.mean(random_interval)), *random_interval, 0.5, 100)
    return {"selected": arm("selected", selected), "random": random, "full": arm("full", full)}


def test_selection_that_beats_both():
    result = verdict(arms(360, 320, (0.70, 0.80)))
    assert result["beats_random"] and result["beats_full"] and not result["loses_to_full"]
    assert np.isclose(result["full_difference"], 0.1)
    lo, hi = result["full_difference_interval"]
    assert 0 < lo < 0.1 < hi
    assert result["sentence"].startswith("The selection (0.900) beats random subsets") and "beats the full pool" in result["sentence"]


def test_selection_that_loses_to_the_full_pool():
    result = verdict(arms(300, 352, (0.70, 0.80)))
    assert result["beats_random"] is False and result["beats_full"] is False and result["loses_to_full"] is True
    assert "does not beat random" in result["sentence"] and "loses to the full pool" in result["sentence"]


def test_a_difference_inside_the_interval_is_a_tie():
    result = verdict(arms(322, 320, (0.70, 0.80)))
    assert result["beats_full"] is False and result["loses_to_full"] is False and "ties with the full pool" in result["sentence"]


def test_without_a_full_arm():
    both = arms(360, 320, (0.70, 0.80))
    del both["full"]
    result = verdict(both)
    assert result["beats_full"] is None and result["loses_to_full"] is None and result["beats_random"] is True
