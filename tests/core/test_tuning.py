"""--tune's split and grid: stated sizes, a fixed seed, disjoint parts, the default first."""

import pandas as pd
import pytest

from dataselect.selection import SelectionConfig
from dataselect.tuning import grid, split_evaluation, tune_build


def test_split_is_seeded_disjoint_and_independent_of_row_order():
    evaluation = pd.DataFrame({"id": [f"e{i:03d}" for i in range(101)], "text": ["t"] * 101, "label": ["a", "b"] * 50 + ["a"]})
    tune_part, held_out = split_evaluation(evaluation)
    assert (len(tune_part), len(held_out)) == (50, 51)  # round(0.5 * 101) = 50
    assert set(tune_part["id"]).isdisjoint(held_out["id"]) and len(set(tune_part["id"]) | set(held_out["id"])) == 101
    shuffled_tune, _ = split_evaluation(evaluation.sample(frac=1.0, random_state=3))
    assert shuffled_tune["id"].tolist() == tune_part["id"].tolist()
    other_seed, _ = split_evaluation(evaluation, seed=1)
    assert other_seed["id"].tolist() != tune_part["id"].tolist()


def test_grid_starts_with_the_callers_default():
    default = SelectionConfig(budget=0.2, seed=3, weights={"relevance.score": 1.0})
    candidates = grid(default, 0.0)
    assert candidates[0].selection == default and candidates[0].min_self_confidence == 0.0
    assert len({c.name for c in candidates}) == len(candidates) == 6
    assert all(c.selection.budget == 0.2 and c.selection.seed == 3 for c in candidates)  # only the recipe varies
    assert candidates[2].min_self_confidence == 0.2 and candidates[1].selection.weights["label_noise.score"] == 0.5
    assert candidates[3].selection.weights == {"relevance.score": 1.0}


def test_tune_refuses_an_unlabelled_evaluation_file():
    evaluation = pd.DataFrame({"id": ["e1", "e2"], "text": ["a", "b"], "label": ["x", None]})
    with pytest.raises(ValueError, match="labelled evaluation file"):
        tune_build(pd.DataFrame(), pd.DataFrame(), None, [], evaluation, SelectionConfig())
    with pytest.raises(ValueError, match="labelled evaluation file"):
        tune_build(pd.DataFrame(), pd.DataFrame(), None, [], None, SelectionConfig())
