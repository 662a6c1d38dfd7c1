import numpy as np

from rtml_cli.data.clickmodel import ClickModel


def test_click_model_round_trip_and_consistency(tmp_path):
    model = ClickModel.random(np.random.default_rng(0))
    path = tmp_path / "cm.npz"
    model.save(path)
    loaded = ClickModel.load(path)
    users = np.arange(10)
    np.testing.assert_allclose(
        loaded.all_probs(users, position=2), model.all_probs(users, position=2)
    )
    items = np.arange(10) % model.n_items
    np.testing.assert_allclose(
        model.prob(users, items, np.full(10, 2)), model.all_probs(users, 2)[users, items]
    )
    probs = model.all_probs(np.arange(model.n_users))
    assert probs.min() > 0 and probs.max() < 1
    # position bias: lower positions are clicked less
    assert (model.all_probs(users, 1) > model.all_probs(users, 3)).all()
